#!/usr/bin/env python3
"""Build tiny random-weight llama-family checkpoints with transformers and
record reference outputs for tests/models/test_llama_parity.c.

Variants: llama (llama3 rope scaling; fp32, bf16, fp16), llama_linear (linear
rope, attention and MLP biases), mistral (sliding window 16, shorter than
prompt + continuation), qwen2 (q/k/v bias; fp32, bf16, fp16) and qwen3 (q/k
norm, head_dim 32 != hidden/heads, tied embeddings). Each dtype's reference
is computed by transformers in that dtype (eager attention, CPU). Output is
deterministic: rerunning reproduces the committed files byte for byte.

For every variant this writes <out>/<name>/ with the files save_pretrained
produces (config.json, generation_config.json, model.safetensors) plus
golden.json:
  prompt        the fixed prompt ids
  logits        last-position logits of the prompt (full vocab, float)
  greedy        32 greedy tokens (one token per step with the model's cache)
  margins       top1 - top2 logit gap at each greedy step (to tell a
                near-tie in the reference from a real divergence)
  full_logits   last-position logits of prompt + greedy[:-1] in one forward
                (for the sliding-window model this spans several windows)

Usage: python3 make_tiny_models.py OUT_DIR
"""
import copy
import json
import os
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

SEED = 1234
PROMPT_LEN = 20
GEN = 32

COMMON = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
)

VARIANTS = [
    # name, model_type, extra config, dtypes
    ("llama", "llama", dict(
        num_hidden_layers=3,
        tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=64),
    ), ["fp32", "bf16", "fp16"]),
    ("llama_linear", "llama", dict(
        tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
        rope_parameters=dict(rope_type="linear", rope_theta=500.0, factor=2.0),
    ), ["fp32"]),
    ("mistral", "mistral", dict(
        sliding_window=16, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0),
    ), ["fp32", "bf16"]),
    ("qwen2", "qwen2", dict(
        tie_word_embeddings=False, use_sliding_window=False,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
    ), ["fp32", "bf16", "fp16"]),
    ("qwen3", "qwen3", dict(
        head_dim=32, tie_word_embeddings=True, rms_norm_eps=1e-6,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
    ), ["fp32", "bf16"]),
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def randomize(model, gen):
    """Replace HF's tiny default init with weights that give well-spread
    logits, so greedy choices are not near-ties."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                v = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            elif name.endswith("bias"):
                v = 0.2 * torch.randn(p.shape, generator=gen)
            elif "embed_tokens" in name:
                v = torch.randn(p.shape, generator=gen)
            elif "lm_head" in name:
                v = 3.0 * torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
            else:
                v = 1.5 * torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
            p.copy_(v.to(p.dtype))


def greedy(model, prompt):
    from transformers import DynamicCache
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([prompt])
    out = model(input_ids=ids, past_key_values=cache, use_cache=True)
    first_logits = out.logits[0, -1].float()
    toks, margins = [], []
    logits = first_logits
    for _ in range(GEN):
        top = torch.topk(logits, 2)
        t = int(top.indices[0])
        toks.append(t)
        margins.append(float(top.values[0] - top.values[1]))
        out = model(input_ids=torch.tensor([[t]]), past_key_values=out.past_key_values,
                    use_cache=True)
        logits = out.logits[0, -1].float()
    return first_logits, toks, margins


def fl(t):
    return [float("%.7g" % x) for x in t.tolist()]


def write_reference(base, dt, d, prompt, model_type):
    """Save base in dtype dt to d, reload it there with transformers (eager)
    and write d/golden.json: this file's keys plus hidden_last, the prompt's
    last position after the embedding and each layer (the last entry after
    the final norm). Used by the sibling scripts; returns the golden."""
    m = copy.deepcopy(base).to(DTYPES[dt])
    m.save_pretrained(d, safe_serialization=True)
    ref = AutoModelForCausalLM.from_pretrained(d, dtype=DTYPES[dt], attn_implementation="eager")
    ref.eval()
    with torch.no_grad():
        logits, toks, margins = greedy(ref, prompt)
        full = ref(input_ids=torch.tensor([prompt + toks[:-1]])).logits[0, -1].float()
        hs = ref(input_ids=torch.tensor([prompt]), output_hidden_states=True).hidden_states
    golden = dict(
        transformers=transformers.__version__, torch=torch.__version__,
        model_type=model_type, dtype=dt, prompt=prompt, greedy=toks,
        margins=[float("%.5g" % x) for x in margins],
        logits=fl(logits), full_logits=fl(full), hidden_last=[fl(h[0, -1].float()) for h in hs],
    )
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(golden, f)
    print(d, "tokens", toks[:12], "min margin %.4g" % min(margins),
          "logit range %.3f" % float(logits.max() - logits.min()))
    return golden


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    prompt = [1] + torch.randint(3, COMMON["vocab_size"], (PROMPT_LEN - 1,),
                                 generator=gen).tolist()
    for name, mtype, extra, dtypes in VARIANTS:
        kw = dict(COMMON)
        kw.update(extra)
        try:
            cfg = AutoConfig.for_model(mtype, **kw)
        except Exception:  # older transformers: rope_scaling + rope_theta
            rp = dict(kw.pop("rope_parameters"))
            kw["rope_theta"] = rp.pop("rope_theta")
            if rp.get("rope_type", "default") != "default":
                kw["rope_scaling"] = rp
            cfg = AutoConfig.for_model(mtype, **kw)
        base = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        randomize(base, gen)
        for dt in dtypes:
            d = os.path.join(out_dir, "%s-%s" % (name, dt))
            m = copy.deepcopy(base).to(DTYPES[dt])
            m.save_pretrained(d, safe_serialization=True)
            ref = AutoModelForCausalLM.from_pretrained(d, dtype=DTYPES[dt],
                                                       attn_implementation="eager")
            ref.eval()
            with torch.no_grad():
                logits, toks, margins = greedy(ref, prompt)
                full = ref(input_ids=torch.tensor([prompt + toks[:-1]])).logits[0, -1].float()
                gen_ids = None
                try:
                    g = ref.generate(torch.tensor([prompt]), max_new_tokens=GEN,
                                     do_sample=False, eos_token_id=None, pad_token_id=0)
                    gen_ids = g[0, len(prompt):].tolist()
                except Exception as e:  # recorded, not fatal
                    print("generate failed for", d, e)
            if gen_ids is not None and gen_ids != toks:
                print("NOTE: generate() differs from the cached loop for", d)
            golden = dict(
                transformers=transformers.__version__, torch=torch.__version__,
                model_type=mtype, dtype=dt, prompt=prompt, greedy=toks,
                generate=gen_ids, margins=[float("%.5g" % x) for x in margins],
                logits=fl(logits), full_logits=fl(full),
            )
            with open(os.path.join(d, "golden.json"), "w") as f:
                json.dump(golden, f)
            print(d, "tokens", toks[:8], "min margin %.4g" % min(margins),
                  "logit range %.3f" % float(logits.max() - logits.min()))


if __name__ == "__main__":
    main()
