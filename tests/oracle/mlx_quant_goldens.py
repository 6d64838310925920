#!/usr/bin/env python3
"""Build MLX-style affine-quantized checkpoints from the tiny fp32 models in
tests/golden/models and record transformers' outputs for them
(tests/models/test_quantized.c).

Quantization (per row, per group of `group_size` consecutive inputs):
  w_min, w_max over the group; scale = (w_max - w_min) / (2^bits - 1)
  (1 when the group is constant); bias = w_min; both stored as bf16;
  q = round((w - bias) / scale) clipped to [0, 2^bits - 1], computed with the
  stored (bf16) scale and bias. q is packed into uint32 words, 32/bits values
  per word, the first in the lowest bits: weight [out, in*bits/32] U32,
  scales and biases [out, in/group_size] BF16.
The reference model is the fp32 model whose quantized weights are replaced
by float(scale) * q + float(bias) (fp32), run by transformers (eager, CPU).

Variants (every Linear and the embedding; lm_head when untied):
  llama-q4g64     bits 4, group 64
  llama-q8g32     bits 8, group 32
  llama-q4mixed   bits 4, group 64 with per-module overrides:
                  model.embed_tokens false (stays fp32) and
                  model.layers.1.mlp.down_proj {bits 8, group_size 32}
  qwen3-q4g64     bits 4, group 64 (tied embeddings)
  qwen3-q8g32     bits 8, group 32

Each <out>/<variant>/ holds config.json (the source's plus "quantization"),
generation_config.json, model.safetensors and golden.json (prompt, logits
of the prompt's last position, 32 greedy tokens, top1-top2 margins, and
full_logits: last-position logits of prompt + greedy[:-1]).

Usage: python3 mlx_quant_goldens.py SRC_MODELS_DIR OUT_DIR
Deterministic: rerunning reproduces the files.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

GEN = 32

VARIANTS = [
    ("llama-q4g64", "llama-fp32", 4, 64, {}),
    ("llama-q8g32", "llama-fp32", 8, 32, {}),
    ("llama-q4mixed", "llama-fp32", 4, 64, {
        "model.embed_tokens": False,
        "model.layers.1.mlp.down_proj": {"group_size": 32, "bits": 8},
    }),
    ("qwen3-q4g64", "qwen3-fp32", 4, 64, {}),
    ("qwen3-q8g32", "qwen3-fp32", 8, 32, {}),
]


def to_bf16_bits(x):
    """fp32 -> bf16 bit patterns (uint16), round to nearest even (finite)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def quantize(w, bits, group):
    """w: fp32 [out, in] -> (packed U32 [out, in*bits/32], scales bf16 bits,
    biases bf16 bits, dequantized fp32 [out, in])."""
    out, inn = w.shape
    assert inn % group == 0 and 32 % bits == 0
    g = w.astype(np.float32).reshape(out, inn // group, group)
    wmin = g.min(axis=2)
    wmax = g.max(axis=2)
    levels = float(2 ** bits - 1)
    scale = (wmax - wmin) / np.float32(levels)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    s_bits = to_bf16_bits(scale)
    b_bits = to_bf16_bits(wmin)
    s = bf16_bits_to_f32(s_bits)
    s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
    s_bits = to_bf16_bits(s)
    b = bf16_bits_to_f32(b_bits)
    q = np.rint((g - b[:, :, None]) / s[:, :, None])
    q = np.clip(q, 0, levels).astype(np.uint32)
    deq = (s[:, :, None] * q.astype(np.float32) + b[:, :, None]).astype(np.float32)
    per = 32 // bits
    qr = q.reshape(out, inn // per, per)
    shifts = (np.arange(per, dtype=np.uint32) * np.uint32(bits)).astype(np.uint32)
    packed = np.bitwise_or.reduce(qr << shifts[None, None, :], axis=2).astype(np.uint32)
    # self-check of the packing: unpack and compare
    mask = np.uint32(2 ** bits - 1)
    un = (packed[:, :, None] >> shifts[None, None, :]) & mask
    assert np.array_equal(un.reshape(out, inn), q.reshape(out, inn))
    return packed, s_bits, b_bits, deq.reshape(out, inn)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, little-endian bytes). Four-byte
    tensors first so every tensor is aligned to its element size."""
    size = {"F32": 4, "U32": 4, "BF16": 2}
    order = sorted(tensors, key=lambda n: (-size[tensors[n][0]], n))
    header, blobs, off = {}, [], 0
    for n in order:
        dt, shape, data = tensors[n]
        assert len(data) == size[dt] * int(np.prod(shape))
        header[n] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def module_setting(name, bits, group, overrides):
    """(bits, group) for a module, or None when it stays unquantized."""
    if name in overrides:
        o = overrides[name]
        if o is False:
            return None
        return o["bits"], o["group_size"]
    return bits, group


def fl(t):
    return [float("%.7g" % x) for x in t.tolist()]


def greedy(model, prompt):
    ids = list(prompt)
    toks, margins, first = [], [], None
    for _ in range(GEN):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        if first is None:
            first = logits
        top = torch.topk(logits, 2)
        t = int(top.indices[0])
        toks.append(t)
        margins.append(float(top.values[0] - top.values[1]))
        ids.append(t)
    return first, toks, margins


def build(src_root, out_root, name, src, bits, group, overrides):
    sdir = os.path.join(src_root, src)
    d = os.path.join(out_root, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(sdir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(sdir, "golden.json")) as f:
        prompt = json.load(f)["prompt"]
    weights = load_file(os.path.join(sdir, "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(sdir, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    tied = bool(cfg.get("tie_word_embeddings", False))
    out = {}
    quantized = set()
    with torch.no_grad():
        for mname, mod in model.named_modules():
            if not isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
                continue
            if mname == "lm_head" and tied:
                continue
            setting = module_setting(mname, bits, group, overrides)
            if setting is None:
                continue
            b, g = setting
            key = mname + ".weight"
            w = weights[key].astype(np.float32)
            packed, s_bits, b_bits, deq = quantize(w, b, g)
            out[key] = ("U32", packed.shape, packed.astype("<u4").tobytes())
            out[mname + ".scales"] = ("BF16", s_bits.shape, s_bits.astype("<u2").tobytes())
            out[mname + ".biases"] = ("BF16", b_bits.shape, b_bits.astype("<u2").tobytes())
            mod.weight.copy_(torch.from_numpy(deq))
            quantized.add(key)
            print("%-14s %-32s bits %d group %3d max|w-deq| %.4g" % (
                name, mname, b, g, float(np.abs(w - deq).max())))
    for key, arr in weights.items():
        if key in quantized:
            continue
        assert arr.dtype == np.float32, key
        out[key] = ("F32", arr.shape, np.ascontiguousarray(arr).astype("<f4").tobytes())
    write_safetensors(os.path.join(d, "model.safetensors"), out)
    q = {"group_size": group, "bits": bits}
    q.update(overrides)
    cfg["quantization"] = q
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copy(os.path.join(sdir, "generation_config.json"), d)
    with torch.no_grad():
        logits, toks, margins = greedy(model, prompt)
        full = model(input_ids=torch.tensor([prompt + toks[:-1]])).logits[0, -1].float()
    golden = dict(
        transformers=transformers.__version__, torch=torch.__version__,
        model_type=cfg["model_type"], dtype="fp32", bits=bits, group_size=group,
        prompt=prompt, greedy=toks, margins=[float("%.5g" % x) for x in margins],
        logits=fl(logits), full_logits=fl(full),
    )
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(golden, f)
    print(d, "tokens", toks[:8], "min margin %.4g" % min(margins),
          "logit range %.3f" % float(logits.max() - logits.min()))


def main():
    src_root, out_root = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    failed = 0
    for v in VARIANTS:
        try:
            build(src_root, out_root, *v)
        except Exception:  # report and go on with the other variants
            import traceback
            traceback.print_exc()
            failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
