#!/usr/bin/env python3
"""Batched decode of the Llama-3.1-8B shape (random bf16 weights): lmc's
paged batched execution against transformers on the same checkpoint and
GPU, in one run.

  python3 bench/batch_vs_hf.py BUILD_DIR WORK_DIR [CONTEXT=512] [BATCHES=1,8,32,64,128]

lmc: bench/batch_decode (tokens/s per batch size and the fraction of the
step's memory-bound limit: (weight bytes + KV bytes read) / measured copy
bandwidth). transformers: its continuous batching (generate_batch, paged
attention) where it runs, else batched generate with the dynamic cache;
decode tokens/s = B * N / (time(N + 1 new tokens) - time(1 new token)),
prompts of CONTEXT random ids. Prints a README table last.
"""
import importlib.util
import json
import os
import subprocess
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.generation import GenerationConfig

NEW = 32


def load_peer_module():
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("dp", os.path.join(here, "decode_prefill_vs_hf.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def log(*a):
    print(*a, flush=True)


def hf_rates(d, vocab, ctx, batches):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda",
                                             attn_implementation="sdpa")
    m.eval()
    g = torch.Generator().manual_seed(3)
    res = {}
    for B in batches:
        prompts = torch.randint(10, vocab, (B, ctx), generator=g)

        def cb(n):
            cfg = GenerationConfig(max_new_tokens=n, do_sample=False, eos_token_id=None,
                                   pad_token_id=0)
            t = time.time()
            with torch.no_grad():
                m.generate_batch(inputs=prompts.tolist(), generation_config=cfg,
                                 progress_bar=False)
            torch.cuda.synchronize()
            return time.time() - t

        def static(n):
            ids = prompts.cuda()
            t = time.time()
            with torch.no_grad():
                m.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                           max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=0)
            torch.cuda.synchronize()
            return time.time() - t

        for mode, fn in (("continuous batching (generate_batch)", cb),
                         ("batched generate, dynamic cache", static)):
            try:
                fn(2)  # warm-up
                t1 = min(fn(1) for _ in range(2))
                tn = min(fn(NEW + 1) for _ in range(2))
                res[B] = dict(mode=mode, tokens_per_s=B * NEW / max(tn - t1, 1e-9))
                break
            except Exception as e:
                log("  transformers %s at batch %d failed: %s" % (mode, B, repr(e)[:200]))
        log("  transformers batch %d: %s" % (B, res.get(B)))
    del m
    torch.cuda.empty_cache()
    return res


def main():
    build, work = sys.argv[1], sys.argv[2]
    ctx = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    batches = [int(b) for b in (sys.argv[4] if len(sys.argv) > 4 else "1,8,32,64,128").split(",")]
    dp = load_peer_module()
    log("transformers", transformers.__version__, "torch", torch.__version__,
        torch.cuda.get_device_name())
    t0 = time.time()
    d = dp.write_checkpoint("llama-3.1-8b", work)
    log("checkpoint in %.0f s" % (time.time() - t0))
    cmd = [os.path.join(build, "bench", "batch_decode"), d, str(ctx), str(NEW),
           ",".join(map(str, batches))]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode:
        log(p.stderr[-3000:])
        sys.exit(1)
    lmc = json.loads(p.stdout.strip().splitlines()[-1])
    log(json.dumps(lmc))
    hf = {}
    if not os.environ.get("LMC_BENCH_SKIP_HF"):
        try:
            hf = hf_rates(d, dp.CONFIGS["llama-3.1-8b"]["vocab_size"], ctx, batches)
        except Exception as e:
            log("transformers failed:", repr(e)[:300])
    with open(os.path.join(work, "batch_results.json"), "w") as f:
        json.dump(dict(lmc=lmc, hf={str(k): v for k, v in hf.items()}), f, indent=1)
    log("\ncopy bandwidth %.2f TB/s; context %d; %d decode steps timed" % (
        lmc["copy_bw"] / 1e12, ctx, NEW))
    log("| batch | lmc tok/s | step (ms) | memory-bound limit (ms) | % of limit |"
        " transformers tok/s (mode) | lmc / transformers |")
    log("|---|---|---|---|---|---|---|")
    for r in lmc["runs"]:
        h = hf.get(r["batch"])
        log("| %d | %.0f | %.2f | %.2f | %.1f%% | %s | %s |" % (
            r["batch"], r["tokens_per_s"], 1e3 * r["step_s"], 1e3 * r["limit_s"],
            100 * r["fraction"],
            "%.0f (%s)" % (h["tokens_per_s"], h["mode"]) if h else "n/a",
            "%.2fx" % (r["tokens_per_s"] / h["tokens_per_s"]) if h else "n/a"))


if __name__ == "__main__":
    main()
