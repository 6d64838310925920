#!/usr/bin/env python3
"""Reference outputs for realistic-width checkpoints (hidden >= 256, head
sizes 64 and 128, intermediate 688, vocabulary 4096, a 2,100-token prompt
that spans more than one 2,048-row prefill chunk) of every architecture lmc
runs, and of its optional features (a partial rotary embedding, logit
softcapping), for tests/models/test_wide_parity.c (CPU),
tests/cuda/test_cuda_wide_parity.c and tests/cuda/test_cuda_batch.c (CUDA).

The checkpoints themselves are not committed (tens of MB each). Every weight
is a value k * 2^e (+1 for norm weights) with a small integer k drawn from a
counter-based generator (splitmix64 of seed, tensor index and element
index) that tests/wide_model.h reimplements; all such values are exact in
fp32, fp16 and bf16, so the fp32, fp16 and bf16 checkpoints the test writes
hold the same numbers and share one reference. The reference is
transformers in fp32 (eager attention, CPU). Each tensor's sum and sum of
squares are recorded so a generator that drifts fails loudly.

Writes <out>/<name>/config.json (as save_pretrained wrote it; one variant is
rewritten to the older key layout: top-level rope_theta, rope_scaling,
torch_dtype) and <out>/<name>/golden.json:
  tensors    [{name, shape, index, center, half_range, exp, sum, sumsq}]
  seed       generator seed
  prompt     2,100 prompt ids;  short: 31 prompt ids
  positions  prompt positions whose logits are stored (include the last)
  logits     [[vocab floats] per position]
  short_logits  last-position logits of the short prompt
  greedy / margins / top5   greedy continuation of the long prompt (with
             the reference's cache), top1-top2 gap and top-5 log-probs
  short_greedy / short_margins  the same for the short prompt
Deterministic: rerunning reproduces the files byte for byte.

Usage: python3 make_wide_models.py OUT_DIR
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

VOCAB = 4096
LONG = 2100
SHORT = 31
GEN_LONG = 8
GEN_SHORT = 16
POSITIONS = [1000, 2047, 2048, LONG - 1]

COMMON = dict(vocab_size=VOCAB, hidden_size=256, intermediate_size=688,
              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=4096, rms_norm_eps=1e-6, bos_token_id=1,
              eos_token_id=2, tie_word_embeddings=False)

# name, model_type, config overrides, seed
VARIANTS = [
    ("llama", "llama", dict(
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=1024)), 11),
    ("mistral", "mistral", dict(
        num_key_value_heads=1, sliding_window=1000,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0)), 12),
    ("qwen2", "qwen2", dict(
        hidden_size=384, num_attention_heads=3, num_key_value_heads=1, use_sliding_window=False,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0)), 13),
    ("qwen3", "qwen3", dict(
        head_dim=128, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0)), 14),
    ("phi3", "phi3", dict(
        num_key_value_heads=4, pad_token_id=0, sliding_window=None,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0)), 15),
    ("gemma3_text", "gemma3_text", dict(
        head_dim=128, query_pre_attn_scalar=128, sliding_window=512, tie_word_embeddings=True,
        layer_types=["sliding_attention", "full_attention"], pad_token_id=0,
        hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=None,
        attn_logit_softcapping=None,
        rope_parameters=dict(
            full_attention=dict(rope_type="default", rope_theta=1000000.0),
            sliding_attention=dict(rope_type="default", rope_theta=10000.0))), 16),
    # Phi-4-mini's partial rotary embedding: RoPE on the first 48 of 64
    # values of each head, grouped-query attention
    ("phi3_partial", "phi3", dict(
        num_key_value_heads=2, pad_token_id=0, sliding_window=None, partial_rotary_factor=0.75,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0)), 17),
    # final logit softcapping, a cap low enough to bite at these widths (Gemma
    # 3's attention takes no softcap in transformers, so lmc refuses a set
    # attn_logit_softcapping); an attention scale other than head_dim^-1/2;
    # the full layer first, a narrower window
    ("gemma3_text_softcap", "gemma3_text", dict(
        head_dim=128, query_pre_attn_scalar=64, sliding_window=300, tie_word_embeddings=True,
        layer_types=["full_attention", "sliding_attention"], pad_token_id=0,
        hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=20.0,
        attn_logit_softcapping=None,
        rope_parameters=dict(
            full_attention=dict(rope_type="default", rope_theta=1000000.0),
            sliding_attention=dict(rope_type="default", rope_theta=10000.0))), 18),
    # Phi-3-mini-128k's longrope: per-frequency short and long factors, the
    # long ones once a forward reaches past original_max_position_embeddings
    # (the 2,100-token prompt; the short prompt stays short), and the
    # attention factor of max / original positions
    ("phi3_longrope", "phi3", dict(
        num_key_value_heads=2, pad_token_id=0, sliding_window=None,
        original_max_position_embeddings=1024,
        rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                             original_max_position_embeddings=1024,
                             short_factor=[1.0 + 0.03 * i for i in range(32)],
                             long_factor=[1.0 + 0.5 * i for i in range(32)])), 19),
    # Phi-3-mini-128k / Phi-3.5-mini's head size, 96 (hidden 384 over four
    # heads), with their longrope scaling: 48 factors a table
    ("phi3_hd96", "phi3", dict(
        hidden_size=384, num_key_value_heads=2, pad_token_id=0, sliding_window=None,
        original_max_position_embeddings=1024,
        rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                             original_max_position_embeddings=1024,
                             short_factor=[1.0 + 0.02 * i for i in range(48)],
                             long_factor=[1.0 + 0.4 * i for i in range(48)])), 20),
    # Gemma 3 1B/4B/12B's head size, 256, four query heads on one KV head
    # (1B's grouping), query_pre_attn_scalar 256, the full layers' RoPE with
    # 4B's linear factor 8
    ("gemma3_hd256", "gemma3_text", dict(
        head_dim=256, num_key_value_heads=1, query_pre_attn_scalar=256, sliding_window=512,
        tie_word_embeddings=True, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0, hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=None,
        attn_logit_softcapping=None,
        rope_parameters=dict(
            full_attention=dict(rope_type="linear", factor=8.0, rope_theta=1000000.0),
            sliding_attention=dict(rope_type="default", rope_theta=10000.0))), 21),
]
# written with the older keys (rope_theta + rope_scaling + torch_dtype)
OLD_LAYOUT = {"llama", "qwen2"}

M64 = (1 << 64) - 1


def splitmix(x):
    """splitmix64 finalizer of x + golden gamma, on uint64 arrays."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def gen_values(seed, index, n, center, half, exp):
    """value_i = center + (k_i - half) * 2^exp, k_i = (h >> 32) mod 2*half."""
    base = (seed << 48) + (index << 36)
    h = splitmix(np.arange(n, dtype=np.uint64) + np.uint64(base))
    k = ((h >> np.uint64(32)) % np.uint64(2 * half)).astype(np.int64) - half
    return (np.float32(center) + k.astype(np.float32) * np.float32(2.0 ** exp)).astype(np.float32)


def tensor_kind(name, shape):
    """(center, half_range, exp): values spread like a trained model's."""
    if "norm" in name:
        # gemma3 stores norms as w with the model using (1 + w)
        return (0.0, 16, -6) if GEMMA else (1.0, 16, -6)
    if name.endswith("bias"):
        return 0.0, 128, -9
    if "embed_tokens" in name:
        # a tied table is also the lm_head: keep its logits in a trained
        # model's range (about 10-30) rather than letting one token win
        return (0.0, 128, -10) if TIED else (0.0, 128, -7)
    fan_in = shape[-1]
    # about 1.5 / sqrt(fan_in) at the edge: 2^e * 128
    e = int(np.round(np.log2(1.7 / np.sqrt(fan_in) / 128)))
    return 0.0, 128, e


GEMMA = False
TIED = False


def build(name, mtype, extra, seed, out_dir):
    global GEMMA, TIED
    GEMMA = mtype.startswith("gemma")
    kw = dict(COMMON)
    kw.update(extra)
    TIED = kw["tie_word_embeddings"]
    cfg = AutoConfig.for_model(mtype, **kw)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                             dtype=torch.float32)
    model.eval()
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        with safe_open(os.path.join(tmp, "model.safetensors"), "pt") as f:
            names = sorted(f.keys())
            shapes = {k: list(f.get_slice(k).get_shape()) for k in names}
        with open(os.path.join(tmp, "config.json")) as f:
            config = json.load(f)
    params = dict(model.named_parameters())
    tensors = []
    with torch.no_grad():
        for i, tn in enumerate(names):
            center, half, exp = tensor_kind(tn, shapes[tn])
            n = int(np.prod(shapes[tn]))
            v = gen_values(seed, i, n, center, half, exp)
            t = torch.from_numpy(v.reshape(shapes[tn]))
            assert torch.equal(t.to(torch.bfloat16).float(), t)
            assert torch.equal(t.to(torch.float16).float(), t)
            params[tn].copy_(t)
            v64 = v.astype(np.float64)
            tensors.append(dict(name=tn, shape=shapes[tn], index=i, center=center,
                                half_range=half, exp=exp, sum=float(v64.sum()),
                                sumsq=float((v64 * v64).sum())))
        if cfg.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    config.pop("transformers_version", None)
    if name in OLD_LAYOUT:
        rp = dict(config.pop("rope_parameters"))
        config["rope_theta"] = rp.pop("rope_theta")
        if rp.get("rope_type", "default") != "default":
            config["rope_scaling"] = rp
        config["torch_dtype"] = config.pop("dtype", "float32")
    else:
        config["dtype"] = "float32"
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    return model, tensors, d


def logprob_top5(logits):
    lp = torch.log_softmax(logits.double(), -1)
    top = torch.topk(lp, 5)
    return [[int(i), float("%.7g" % float(v))] for v, i in zip(top.values, top.indices)]


def greedy(model, prompt, n):
    cache = DynamicCache(config=model.config)
    out = model(input_ids=torch.tensor([prompt]), past_key_values=cache, use_cache=True)
    logits = out.logits[0, -1].float()
    toks, margins, top5 = [], [], []
    for _ in range(n):
        top = torch.topk(logits, 2)
        t = int(top.indices[0])
        toks.append(t)
        margins.append(float("%.5g" % float(top.values[0] - top.values[1])))
        top5.append(logprob_top5(logits))
        out = model(input_ids=torch.tensor([[t]]), past_key_values=out.past_key_values,
                    use_cache=True)
        logits = out.logits[0, -1].float()
    return toks, margins, top5


def fl(t):
    return [float("%.6g" % x) for x in t.tolist()]


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    only = os.environ.get("WIDE_ONLY", "").split()  # remake only these recipes
    for name, mtype, extra, seed in VARIANTS:
        if only and name not in only:
            continue
        model, tensors, d = build(name, mtype, extra, seed, out_dir)
        g = torch.Generator().manual_seed(seed)
        prompt = [1] + torch.randint(3, VOCAB, (LONG - 1,), generator=g).tolist()
        short = [1] + torch.randint(3, VOCAB, (SHORT - 1,), generator=g).tolist()
        with torch.no_grad():
            full = model(input_ids=torch.tensor([prompt])).logits[0].float()
            sl = model(input_ids=torch.tensor([short])).logits[0, -1].float()
            toks, margins, top5 = greedy(model, prompt, GEN_LONG)
            stoks, smargins, stop5 = greedy(model, short, GEN_SHORT)
        rng = float(full[-1].max() - full[-1].min())
        golden = dict(
            transformers=transformers.__version__, torch=torch.__version__,
            model_type=mtype, reference_dtype="float32", seed=seed, tensors=tensors,
            prompt=prompt, short=short, positions=POSITIONS,
            logits=[fl(full[p]) for p in POSITIONS], short_logits=fl(sl),
            greedy=toks, margins=margins, top5=top5,
            short_greedy=stoks, short_margins=smargins, short_top5=stop5)
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump(golden, f)
        print("%-12s greedy %s min margin %.3g (short %.3g) logit range %.2f" % (
            name, toks, min(margins), min(smargins), rng))


if __name__ == "__main__":
    main()
