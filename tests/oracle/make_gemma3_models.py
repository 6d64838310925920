#!/usr/bin/env python3
"""Build tiny random-weight Gemma 3 text checkpoints (model_type gemma3_text)
with transformers and record its outputs for tests/models/test_gemma3_parity.c.

The sibling of make_tiny_models.py (same greedy loop and golden.json layout).
What the variant exercises:
  - sliding-window layers (window 6, shorter than prompt + continuation) mixed
    with a full-attention layer, each kind with its own RoPE (local base
    10000; global base 1e6 with linear scaling, factor 4);
  - query_pre_attn_scalar (24) != head_dim (32) for the attention scale;
  - hidden_size 48: the embedding scale sqrt(48) is rounded to the dtype;
  - RMSNorm with (1 + weight), computed in float, on the layer input, the
    attention output, before and after the MLP, and per head on q and k;
  - GeGLU with the tanh-approximated GELU; tied embeddings.
fp32 and bf16, each computed by transformers in that dtype (eager, CPU).

Usage: python3 make_gemma3_models.py OUT_DIR
"""
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_models as tiny  # noqa: E402

SEED = 777
PROMPT_LEN = 20
GEN = 32

COMMON = dict(
    vocab_size=256,
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    query_pre_attn_scalar=24,
    hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    sliding_window=6,
    layer_types=["sliding_attention", "sliding_attention", "full_attention",
                 "sliding_attention"],
    final_logit_softcapping=None,
    attn_logit_softcapping=None,
    tie_word_embeddings=True,
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
)

ROPE_NEW = dict(rope_parameters={
    "full_attention": dict(rope_type="linear", rope_theta=1000000.0, factor=4.0),
    "sliding_attention": dict(rope_type="default", rope_theta=10000.0),
})
ROPE_OLD = dict(rope_theta=1000000.0, rope_local_base_freq=10000.0,
                rope_scaling=dict(rope_type="linear", factor=4.0))


def randomize(model, gen):
    """make_tiny_models' spread, with norm weights around 0 (they scale by
    1 + weight) and small embeddings: the model multiplies them by
    sqrt(hidden_size), and at unit scale the residual stream would be the
    input token's embedding alone, so that the tied head repeats it."""
    tiny.randomize(model, gen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((0.3 * torch.randn(p.shape, generator=gen)).to(p.dtype))
            elif "embed_tokens" in name:
                p.copy_((0.15 * torch.randn(p.shape, generator=gen)).to(p.dtype))


def make_config():
    for rope in (ROPE_NEW, ROPE_OLD):
        kw = dict(COMMON)
        kw.update(rope)
        try:
            cfg = AutoConfig.for_model("gemma3_text", **kw)
            print("config built with", "rope_parameters" if rope is ROPE_NEW else "rope_theta")
            return cfg
        except Exception as e:  # the other spelling
            print("config attempt failed:", e)
    raise SystemExit("cannot build a gemma3_text config")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    tiny.GEN = GEN
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    prompt = [2] + torch.randint(3, COMMON["vocab_size"], (PROMPT_LEN - 1,),
                                 generator=gen).tolist()
    cfg = make_config()
    base = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    randomize(base, gen)
    for dt in ("fp32", "bf16"):
        tiny.write_reference(base, dt, os.path.join(out_dir, "gemma3-%s" % dt), prompt,
                             "gemma3_text")


if __name__ == "__main__":
    main()
