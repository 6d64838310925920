#!/usr/bin/env python3
"""References for tests/formats: what torch, safetensors and transformers
do with the inputs lmc's formats module reads.

Writes to OUT_DIR:
  hf_mixed.safetensors  written by safetensors.torch.save_file: every dtype
                        lmc reads, a 0-dim tensor, an empty tensor, metadata
  formats_goldens.json
    tensors     name -> {dtype, shape, values (flattened, as float/int)}
    metadata    the __metadata__ map
    conversions [f32 bits, bf16 bits, f16 bits] from torch .to(bfloat16 /
                float16) (round to nearest even)
    configs     name -> {config: config.json text, expect: fields as
                transformers' AutoConfig reads them}

Usage: python3 formats_goldens.py OUT_DIR
"""
import json
import os
import sys
import tempfile

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig


def tensors():
    g = torch.Generator().manual_seed(11)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "i64": torch.arange(-3, 3, dtype=torch.int64),
        "i32": torch.tensor([[-2**31, 7], [2**31 - 1, 0]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(4, 2, generator=g),
    }


DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def conversions():
    g = torch.Generator().manual_seed(5)
    scales = torch.logspace(-9, 5, 300, dtype=torch.float64)
    rand = (torch.randn(300, generator=g, dtype=torch.float64) * scales).float()
    special = torch.tensor([
        0.0, -0.0, 1.0, -1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-11, 1 + 3 * 2**-11,
        65504.0, 65519.0, 65520.0, 70000.0, 2**-14, 2**-24, 2**-25, 3 * 2**-25, 2**-26,
        6e-8, 1e-40, 3.4e38, -3.4e38, float("inf"), float("-inf"), 0.1, 1 / 3,
    ], dtype=torch.float32)
    v = torch.cat([special, rand])
    f32 = v.view(torch.int32).tolist()
    bf = v.to(torch.bfloat16).view(torch.int16).tolist()
    h = v.to(torch.float16).view(torch.int16).tolist()
    return [[a & 0xFFFFFFFF, b & 0xFFFF, c & 0xFFFF] for a, b, c in zip(f32, bf, h)]


CONFIGS = {
    "llama_minimal": {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
                      "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100},
    "llama3_rope": {"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32,
                    "num_key_value_heads": 8, "head_dim": 64, "num_hidden_layers": 16,
                    "intermediate_size": 8192, "vocab_size": 128256, "rms_norm_eps": 1e-5,
                    "max_position_embeddings": 131072, "rope_theta": 500000.0,
                    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
                                     "low_freq_factor": 1.0,
                                     "original_max_position_embeddings": 8192,
                                     "rope_type": "llama3"},
                    "tie_word_embeddings": True},
    "llama_linear_legacy": {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
                            "rope_scaling": {"type": "linear", "factor": 2.0}},
    "mistral_window": {"model_type": "mistral", "hidden_size": 4096, "num_attention_heads": 32,
                       "num_key_value_heads": 8, "sliding_window": 4096,
                       "rms_norm_eps": 1e-5, "max_position_embeddings": 32768},
    "qwen2_no_window": {"model_type": "qwen2", "hidden_size": 896, "num_attention_heads": 14,
                        "num_key_value_heads": 2, "sliding_window": 32768,
                        "use_sliding_window": False, "rope_theta": 1000000.0,
                        "tie_word_embeddings": True},
    "qwen3_minimal": {"model_type": "qwen3", "hidden_size": 1024, "num_attention_heads": 16,
                      "num_key_value_heads": 8, "head_dim": 128},
    "qwen3_v5_rope": {"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4,
                      "head_dim": 32,
                      "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}},
}


def rope_of(c):
    rp = getattr(c, "rope_parameters", None)
    if isinstance(rp, dict) and "full_attention" in rp and "rope_theta" not in rp:
        rp = rp["full_attention"]
    theta = (rp or {}).get("rope_theta", getattr(c, "rope_theta", None))
    rs = rp if rp else (getattr(c, "rope_scaling", None) or {})
    rtype = rs.get("rope_type", rs.get("type", "default"))
    return theta, ("" if rtype == "default" else rtype), rs.get("factor")


def config_expect(cfg):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        c = AutoConfig.from_pretrained(d)
    theta, rtype, factor = rope_of(c)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    exp = {
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": head_dim,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": theta,
        "rope_type": rtype,
        "tie_word_embeddings": bool(c.tie_word_embeddings),
        "sliding_window": getattr(c, "sliding_window", None) or 0,
        "hidden_act": c.hidden_act,
    }
    if factor is not None:
        exp["rope_factor"] = factor
    if cfg["model_type"] != "qwen2":  # qwen2 has no attention_bias key; its bias is built in
        exp["attention_bias"] = bool(getattr(c, "attention_bias", False))
    return exp


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    ts = tensors()
    meta = {"format": "pt", "note": "written by safetensors.torch"}
    save_file(ts, os.path.join(out, "hf_mixed.safetensors"), metadata=meta)
    golden = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "metadata": meta,
        "tensors": {
            k: {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                "values": (t.float() if t.is_floating_point() else t.long()).flatten().tolist()}
            for k, t in ts.items()
        },
        "conversions": conversions(),
        "configs": {k: {"config": json.dumps(v), "expect": config_expect(v)}
                    for k, v in CONFIGS.items()},
    }
    with open(os.path.join(out, "formats_goldens.json"), "w") as f:
        json.dump(golden, f, indent=1)


if __name__ == "__main__":
    main()
