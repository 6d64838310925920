#!/usr/bin/env python3
"""Build tiny random-weight Phi-3 checkpoints (model_type phi3) with
transformers and record its outputs for tests/models/test_phi3_parity.c.

The sibling of make_tiny_models.py (same weight init, greedy loop and
golden.json layout). Phi-3 stores q/k/v as one qkv_proj and gate/up as one
gate_up_proj (gate first). Variants:
  phi3          full rotary; fp32 and bf16
  phi3_partial  partial_rotary_factor 0.5 (RoPE on the first half of each
                head, as Phi-4-mini does), rope_theta 250000; fp32
golden.json adds hidden_last: the prompt's last position after the
embedding and each layer (the last entry after the final norm).

Usage: python3 make_phi3_models.py OUT_DIR
"""
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_models as tiny  # noqa: E402

SEED = 999
PROMPT_LEN = 20
GEN = 32

COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    original_max_position_embeddings=256,
    rms_norm_eps=1e-5,
    hidden_act="silu",
    sliding_window=None,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

VARIANTS = [
    ("phi3", dict(rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
     ["fp32", "bf16"]),
    ("phi3_partial", dict(partial_rotary_factor=0.5,
                          rope_parameters=dict(rope_type="default", rope_theta=250000.0)),
     ["fp32"]),
]


def make_config(extra):
    kw = dict(COMMON)
    kw.update(extra)
    try:
        return AutoConfig.for_model("phi3", **kw)
    except Exception as e:  # older transformers: rope_theta at the top
        print("rope_parameters refused:", e)
        rp = dict(kw.pop("rope_parameters"))
        kw["rope_theta"] = rp["rope_theta"]
        return AutoConfig.for_model("phi3", **kw)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    tiny.GEN = GEN
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    prompt = [1] + torch.randint(3, COMMON["vocab_size"], (PROMPT_LEN - 1,),
                                 generator=gen).tolist()
    for name, extra, dtypes in VARIANTS:
        base = AutoModelForCausalLM.from_config(make_config(extra), attn_implementation="eager")
        tiny.randomize(base, gen)
        for dt in dtypes:
            d = os.path.join(out_dir, "%s-%s" % (name, dt))
            tiny.write_reference(base, dt, d, prompt, "phi3")


if __name__ == "__main__":
    main()
