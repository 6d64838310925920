#!/usr/bin/env python3
"""Build tiny random-weight llama / qwen3 checkpoints with YaRN rope scaling
and record transformers' outputs for tests/models/test_yarn_parity.c (and
tests/cuda/test_cuda_parity.c, which checks every model directory).

The sibling of make_tiny_models.py (same weight init, greedy loop and
golden.json layout), with smaller models so that several fit the golden
budget, and a prompt longer than the original context (64) so that the
positions reach the interpolated part of the frequency table:

  llama_yarn        factor 4, defaults (attention factor 0.1 ln 4 + 1);
                    fp32 and bf16
  qwen3_yarn        explicit attention_factor, beta_fast 16 / beta_slow 2;
                    fp32 and bf16
  llama_yarn_mscale attention factor from mscale / mscale_all_dim,
                    truncate false (fractional ramp bounds); fp32

golden.json adds to make_tiny_models.py's keys:
  rope_inv_freq          the rotary embedding's inv_freq buffer as used
  rope_attention_factor  its attention_scaling (multiplies cos and sin)

Usage: python3 make_yarn_models.py OUT_DIR
"""
import copy
import json
import os
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_models as tiny  # noqa: E402

SEED = 4321
PROMPT_LEN = 100
GEN = 24

COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=True,
)

VARIANTS = [
    ("llama_yarn", "llama", dict(
        rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                             original_max_position_embeddings=64),
    ), ["fp32", "bf16"]),
    ("qwen3_yarn", "qwen3", dict(
        rms_norm_eps=1e-6, use_sliding_window=False,
        rope_parameters=dict(rope_type="yarn", rope_theta=100000.0, factor=4.0,
                             original_max_position_embeddings=64, attention_factor=1.25,
                             beta_fast=16.0, beta_slow=2.0),
    ), ["fp32", "bf16"]),
    ("llama_yarn_mscale", "llama", dict(
        rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                             original_max_position_embeddings=64, mscale=0.707,
                             mscale_all_dim=1.0, truncate=False),
    ), ["fp32"]),
]


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    tiny.GEN = GEN
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    prompt = [1] + torch.randint(3, COMMON["vocab_size"], (PROMPT_LEN - 1,),
                                 generator=gen).tolist()
    for name, mtype, extra, dtypes in VARIANTS:
        kw = dict(COMMON)
        kw.update(extra)
        cfg = AutoConfig.for_model(mtype, **kw)
        base = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        tiny.randomize(base, gen)
        for dt in dtypes:
            d = os.path.join(out_dir, "%s-%s" % (name, dt))
            m = copy.deepcopy(base).to(tiny.DTYPES[dt])
            m.save_pretrained(d, safe_serialization=True)
            ref = AutoModelForCausalLM.from_pretrained(d, dtype=tiny.DTYPES[dt],
                                                       attn_implementation="eager")
            ref.eval()
            rot = ref.model.rotary_emb
            with torch.no_grad():
                logits, toks, margins = tiny.greedy(ref, prompt)
                full = ref(input_ids=torch.tensor([prompt + toks[:-1]])).logits[0, -1].float()
            golden = dict(
                transformers=transformers.__version__, torch=torch.__version__,
                model_type=mtype, dtype=dt, prompt=prompt, greedy=toks,
                margins=[float("%.5g" % x) for x in margins],
                logits=tiny.fl(logits), full_logits=tiny.fl(full),
                rope_inv_freq=[float("%.9g" % x) for x in rot.inv_freq.float().tolist()],
                rope_inv_freq_dtype=str(rot.inv_freq.dtype),
                rope_attention_factor=float(rot.attention_scaling),
            )
            with open(os.path.join(d, "golden.json"), "w") as f:
                json.dump(golden, f)
            print(d, "tokens", toks[:8], "min margin %.4g" % min(margins),
                  "logit range %.3f" % float(logits.max() - logits.min()),
                  "attention factor %.6f" % float(rot.attention_scaling))


if __name__ == "__main__":
    main()
