#!/usr/bin/env python3
"""Builds the seed corpora under fuzz/corpus/ from the repository's real
assets: tiny-model configs and safetensors, the fetched tokenizers (shrunk
to a few hundred vocabulary entries so every seed stays small), and the
tokenizer test texts. Run from the repository root after
scripts/fetch_assets.sh; the output is committed, so this only needs
re-running when the assets change. Standard library only."""
import glob
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
GEN_SEP = b"\n#generation_config.json\n"
CFG_SEP = b"\n#tokenizer_config.json\n"
DTYPE_SIZE = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
              "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


# Seeds that still trip an open finding (see fuzz/README.md) are written to
# fuzz/open/<target>/ instead, so the replay tests stay green until the fix
# lands; empty this once they pass.
OPEN_TOKENIZERS = set()
ENCODE_ORDER = ["qwen3", "llama3_1", "llama2", "deepseek_v3", "unigram", "bert"]


def put(target, name, data, parked=False):
    d = os.path.join(ROOT, "fuzz", "open", target) if parked else os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def st_bytes(header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def shrink_safetensors(path, max_dim=2):
    """The same tensor names, dtypes and metadata with every dimension
    capped at max_dim, and the bytes taken from the original tensors."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out_h, out_d = {}, b""
    for name, t in header.items():
        if name == "__metadata__":
            out_h[name] = t
            continue
        shape = [min(d, max_dim) for d in t["shape"]]
        count = 1
        for d in shape:
            count *= d
        nb = count * DTYPE_SIZE[t["dtype"]]
        b, _ = t["data_offsets"]
        out_h[name] = {"dtype": t["dtype"], "shape": shape,
                       "data_offsets": [len(out_d), len(out_d) + nb]}
        out_d += body[b:b + nb]
    return st_bytes(out_h, out_d)


def safetensors_seeds():
    put("safetensors", "hf_mixed.safetensors",
        open(os.path.join(ROOT, "tests/golden/formats/hf_mixed.safetensors"), "rb").read())
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/golden/models/*/model.safetensors"))):
        if "bf16" in p or "llama_linear" in p:
            put("safetensors", os.path.basename(os.path.dirname(p)) + ".safetensors",
                shrink_safetensors(p))
    put("safetensors", "empty_header.safetensors", st_bytes({}, b""))
    put("safetensors", "zero_size.safetensors",
        st_bytes({"__metadata__": {"format": "pt"},
                  "e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},
                  "s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}},
                 struct.pack("<q", -5)))
    # Hostile headers: each must be refused with a message.
    f32 = lambda shape, b, e: {"dtype": "F32", "shape": shape, "data_offsets": [b, e]}
    bad = {
        "shape_overflow": {"t": f32([1 << 62, 8], 0, 0)},
        "offsets_past_end": {"t": f32([2], 0, 1 << 40)},
        "offsets_reversed": {"t": f32([0], 8, 0)},
        "overlap": {"a": f32([2], 0, 8), "b": f32([2], 4, 12)},
        "negative_dim": {"t": f32([-2], 0, 8)},
        "too_many_dims": {"t": f32([1] * 12, 0, 4)},
        "unknown_dtype": {"t": {"dtype": "F8_E9", "shape": [1], "data_offsets": [0, 1]}},
        "metadata_not_str": {"__metadata__": {"k": 1}},
    }
    for name, h in bad.items():
        put("safetensors", name + ".safetensors", st_bytes(h, b"\0" * 16))
    put("safetensors", "header_len_huge.safetensors", struct.pack("<Q", (1 << 64) - 1) + b"{}")
    put("safetensors", "index.json", json.dumps({
        "metadata": {"total_size": 40},
        "weight_map": {"model.embed_tokens.weight": "a.safetensors",
                       "model.norm.weight": "a.safetensors",
                       "lm_head.weight": "b.safetensors"}}, indent=2))


def config_seeds():
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/golden/models/*/config.json"))):
        name = os.path.basename(os.path.dirname(p))
        data = open(p, "rb").read()
        put("config", name + ".json", data)
        if name.endswith("fp32"):
            put("model_config", name + ".json", data)
        gen = os.path.join(os.path.dirname(p), "generation_config.json")
        if os.path.exists(gen):
            put("config", name + "+gen.json", data + GEN_SEP + open(gen, "rb").read())
    llama = open(os.path.join(ROOT, "tests/golden/models/llama-fp32/config.json"), "rb").read()
    put("config", "gen_eos_list.json",
        llama + GEN_SEP + b'{"bos_token_id": 1, "eos_token_id": [2, 7, 9], "do_sample": true}')
    put("config", "gen_eos_zero.json", llama + GEN_SEP + b'{"eos_token_id": 0}')
    put("config", "rope_llama3.json", json.dumps({
        "model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "quantization": {"group_size": 64, "bits": 4}, "eos_token_id": [1, 2],
        "torch_dtype": "bfloat16", "sliding_window": 4096, "use_sliding_window": False}))


def model_config_seeds():
    """Edge-case variants of the tiny llama config (the fuzzed config sits
    next to that model's real weights)."""
    base = json.load(open(os.path.join(ROOT, "tests/golden/models/llama-fp32/config.json")))
    variants = {
        "max_position_huge": {"max_position_embeddings": 1 << 62},
        "sliding_window_1": {"sliding_window": 1},
        "tied": {"tie_word_embeddings": True},
        "fewer_layers": {"num_hidden_layers": 1},
        "kv_heads_3": {"num_key_value_heads": 3},
        "rope_linear": {"rope_scaling": {"rope_type": "linear", "factor": 0.5}},
    }
    for name, change in variants.items():
        c = dict(base)
        c.update(change)
        put("model_config", name + ".json", json.dumps(c, indent=1))


def shrink_tokenizer(tok, keep=400, max_merges=300, max_added=40):
    m = tok["model"]
    v = m.get("vocab")
    if isinstance(v, dict):
        kept = {k: i for k, i in v.items() if i < keep}
        m["vocab"] = kept
        if "merges" in m:
            out = []
            for mg in m["merges"]:
                a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
                if a in kept and b in kept and a + b in kept:
                    out.append(mg)
                if len(out) >= max_merges:
                    break
            m["merges"] = out
        if m.get("unk_token") and m["unk_token"] not in kept:
            kept[m["unk_token"]] = len(kept)
    elif isinstance(v, list):
        unk = m.get("unk_id")
        m["vocab"] = v[:keep]
        if unk is not None and unk >= keep:
            m["unk_id"] = 0
    tok["added_tokens"] = (tok.get("added_tokens") or [])[:max_added]
    return tok


def tokenizer_dirs():
    dirs = sorted(glob.glob(os.path.join(ROOT, ".cache/assets/tokenizers/*")))
    dirs += [os.path.join(ROOT, "tests/golden/tokenizer", n) for n in ("unigram", "bert")]
    return [d for d in dirs if os.path.exists(os.path.join(d, "tokenizer.json"))]


def tokenizer_load_seeds():
    for d in tokenizer_dirs():
        name = os.path.basename(d)
        tok = shrink_tokenizer(json.load(open(os.path.join(d, "tokenizer.json"))))
        tj = json.dumps(tok, ensure_ascii=False).encode()
        parked = name in OPEN_TOKENIZERS
        put("tokenizer_load", name + ".json", tj, parked)
        cp = os.path.join(d, "tokenizer_config.json")
        if os.path.exists(cp):
            cfg = json.load(open(cp))
            cfg.pop("added_tokens_decoder", None)
            put("tokenizer_load", name + "+config.json",
                tj + CFG_SEP + json.dumps(cfg, ensure_ascii=False).encode(), parked)


def tokenizer_encode_seeds(n_texts=72, max_len=1500):
    lines = open(os.path.join(ROOT, "tests/golden/tokenizer/corpus.jsonl"),
                 encoding="utf-8").read().splitlines()
    step = max(1, len(lines) // n_texts)
    for k, i in enumerate(range(0, len(lines), step)):
        text = json.loads(lines[i]).encode("utf-8", "surrogatepass")[:max_len]
        selector = (k % 6) | (0x80 if k % 12 >= 6 else 0)
        put("tokenizer_encode", "text%03d" % k, bytes([selector]) + text,
            ENCODE_ORDER[k % 6] in OPEN_TOKENIZERS)


def template_seeds():
    seen = set()
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/golden/templates/*.jinja"))):
        src = open(p, "rb").read()
        seen.add(src)
        put("template", os.path.basename(p), src)
    for d in tokenizer_dirs():
        cp = os.path.join(d, "tokenizer_config.json")
        if not os.path.exists(cp):
            continue
        ct = json.load(open(cp)).get("chat_template")
        if isinstance(ct, str):
            ct = [{"name": "default", "template": ct}]
        for e in ct or []:
            src = e["template"].encode()
            if len(src) <= 65536 and src not in seen:
                seen.add(src)
                put("template", "%s-%s.jinja" % (os.path.basename(d), e["name"]), src)


if __name__ == "__main__":
    safetensors_seeds()
    config_seeds()
    model_config_seeds()
    tokenizer_load_seeds()
    tokenizer_encode_seeds()
    template_seeds()
