#!/usr/bin/env python3
"""Decode and prefill speed of lmc's CUDA backend against HF transformers,
on random-weight bf16 checkpoints with the real configs of Qwen2.5-0.5B,
Llama-3.2-1B and Llama-3.1-8B, measured in the same run on the same GPU.

  python3 bench/decode_prefill_vs_hf.py BUILD_DIR WORK_DIR [MODEL ...]

WORK_DIR receives the checkpoints (several GB; keep it on the GPU machine's
disk). For every model it prints and records (WORK_DIR/results.json):
  decode   batch-1 greedy tokens/s after a 128-token prompt (256 new
           tokens), lmc and transformers (static cache + torch.compile,
           else the plain dynamic cache), and lmc as a fraction of the
           bandwidth limit: copy bandwidth / (bytes of weights read per
           token + KV bytes at the mean context)
  prefill  seconds for a 2,048-token prompt, both, and lmc's FLOP rate as a
           fraction of the measured bf16 matmul peak
LMC_BENCH_SKIP_HF=1 measures lmc alone.
"""
import gc
import json
import os
import subprocess
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

PROMPT, NEW, PREFILL = 128, 256, 2048

CONFIGS = {
    "qwen2.5-0.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False, sliding_window=None, hidden_act="silu",
        bos_token_id=151643, eos_token_id=151643,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    "llama-3.2-1b": dict(
        model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
        hidden_act="silu", bos_token_id=128000, eos_token_id=128001,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=32.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=8192)),
    "llama-3.1-8b": dict(
        model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False,
        hidden_act="silu", bos_token_id=128000, eos_token_id=128001,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=8192)),
}


def log(*a):
    print(*a, flush=True)


def make_config(kw):
    kw = dict(kw)
    mtype = kw.pop("model_type")
    try:
        return AutoConfig.for_model(mtype, **kw)
    except Exception:  # older transformers: rope_theta + rope_scaling
        rp = dict(kw.pop("rope_parameters"))
        kw["rope_theta"] = rp.pop("rope_theta")
        if rp.get("rope_type", "default") != "default":
            kw["rope_scaling"] = rp
        return AutoConfig.for_model(mtype, **kw)


def cuda_time(fn, reps, warm=2):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def ceilings():
    n = 1 << 30  # 1 GiB each way, far beyond L2
    x = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    t = cuda_time(lambda: y.copy_(x), 20)
    bw = 2 * n / t
    del x, y
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    t = cuda_time(lambda: a @ b, 20, warm=5)
    peak = 2 * 8192 ** 3 / t
    del a, b
    torch.cuda.empty_cache()
    return bw, peak


def bytes_per_token(c):
    """Weights a decode step must read (bf16): every layer matrix and norm,
    the final norm and the lm_head (the embedding table itself only when
    tied, since the lookup reads one row)."""
    H, I, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    D = c.get("head_dim") or H // c["num_attention_heads"]
    qd, kvd = c["num_attention_heads"] * D, c["num_key_value_heads"] * D
    per_layer = H * (qd + 2 * kvd) + qd * H + 3 * H * I + 2 * H
    bias = (qd + 2 * kvd) if c["model_type"] == "qwen2" else 0
    w = L * (per_layer + bias) + H + c["vocab_size"] * H
    kv_per_pos = 2 * L * c["num_key_value_heads"] * D * 2
    return 2 * w, kv_per_pos


def write_checkpoint(name, work):
    d = os.path.join(work, name)
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    cfg = make_config(CONFIGS[name])
    torch.manual_seed(0)
    with torch.device("cuda"):
        m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    m.save_pretrained(d)
    del m
    gc.collect()
    torch.cuda.empty_cache()
    return d


def hf_bench(d, vocab):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda",
                                             attn_implementation="sdpa")
    m.eval()
    m.generation_config.eos_token_id = None
    m.generation_config.pad_token_id = 0
    g = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(10, vocab, (1, PROMPT), generator=g).cuda()
    res = {}

    def gen(n, **kw):
        with torch.no_grad():
            m.generate(ids, do_sample=False, max_new_tokens=n, min_new_tokens=n, **kw)

    def per_token(**kw):
        # both lengths warm (a static cache of another size compiles anew)
        short = cuda_time(lambda: gen(16, **kw), 3, warm=2)
        long = cuda_time(lambda: gen(16 + NEW, **kw), 3, warm=2)
        return (long - short) / NEW

    try:
        res["hf_s_per_token"] = per_token(cache_implementation="static")
        res["hf_mode"] = "static cache + torch.compile"
    except Exception as e:  # fall back to the plain dynamic cache
        log("  static/compile failed:", repr(e)[:200])
        torch._dynamo.reset()
        res["hf_s_per_token"] = per_token()
        res["hf_mode"] = "dynamic cache (eager)"
    pf = torch.randint(10, vocab, (1, PREFILL), generator=g).cuda()

    def prefill():
        with torch.no_grad():
            m(pf, logits_to_keep=1)

    res["hf_prefill_s"] = cuda_time(prefill, 5)
    del m
    gc.collect()
    torch.cuda.empty_cache()
    return res


def run_json(cmd):
    log("  $", " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError("%s failed: %s" % (cmd[0], p.stderr[-2000:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    build, work = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(CONFIGS)
    os.makedirs(work, exist_ok=True)
    log("transformers", transformers.__version__, "torch", torch.__version__,
        torch.cuda.get_device_name())
    bw, peak = ceilings()
    log("copy bandwidth %.2f TB/s, bf16 matmul peak %.0f TFLOP/s" % (bw / 1e12, peak / 1e12))
    results = dict(copy_bw=bw, bf16_peak=peak, models={})
    for name in names:
        c = CONFIGS[name]
        t0 = time.time()
        d = write_checkpoint(name, work)
        log("%s: checkpoint in %.0f s" % (name, time.time() - t0))
        r = {}
        try:
            if not os.environ.get("LMC_BENCH_SKIP_HF"):  # lmc alone, while tuning
                r.update(hf_bench(d, c["vocab_size"]))
        except Exception as e:
            log("  transformers failed:", repr(e)[:300])
        dec = run_json([os.path.join(build, "bench", "decode"), d, str(PROMPT), str(NEW), "3"])
        pre = run_json([os.path.join(build, "bench", "prefill"), d, str(PREFILL), "5"])
        wbytes, kv_pos = bytes_per_token(c)
        step_bytes = wbytes + kv_pos * (PROMPT + NEW / 2)
        r.update(lmc_s_per_token=dec["s_per_token"], lmc_prefill_s=pre["seconds"],
                 prefill_flops=pre["flops"], step_bytes=step_bytes,
                 bw_fraction=step_bytes / dec["s_per_token"] / bw,
                 peak_fraction=pre["flops"] / pre["seconds"] / peak)
        if "hf_s_per_token" in r:
            r["decode_speedup"] = r["hf_s_per_token"] / r["lmc_s_per_token"]
        if "hf_prefill_s" in r:
            r["prefill_speedup"] = r["hf_prefill_s"] / r["lmc_prefill_s"]
        results["models"][name] = r
        log("  %s" % json.dumps(r))
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    log("\n| model | lmc decode tok/s | % of bandwidth limit | HF tok/s (mode) | speedup |"
        " lmc prefill 2048 (ms) | % of bf16 peak | HF prefill (ms) | speedup |")
    log("|---|---|---|---|---|---|---|---|---|")
    for name, r in results["models"].items():
        hf_tok = 1 / r["hf_s_per_token"] if "hf_s_per_token" in r else float("nan")
        # one decimal: a goal line must not be crossed by rounding
        log("| %s | %.0f | %.1f%% | %.0f (%s) | %.2fx | %.2f | %.1f%% | %.1f | %.2fx |" % (
            name, 1 / r["lmc_s_per_token"], 100 * r["bw_fraction"], hf_tok,
            r.get("hf_mode", "n/a"), r.get("decode_speedup", float("nan")),
            1e3 * r["lmc_prefill_s"], 100 * r["peak_fraction"],
            1e3 * r.get("hf_prefill_s", float("nan")), r.get("prefill_speedup", float("nan"))))


if __name__ == "__main__":
    main()
