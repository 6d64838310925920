#!/usr/bin/env python3
"""Seeds for fuzz_prompt_cache, derived from the real prompt cache
fuzz/corpus/fuzz_prompt_cache/real_4_tokens.safetensors (written by the
harness itself: LMC_FUZZ_MAKE_SEED=<that path> build/tests/fuzz_regress/
fuzz_regress_prompt_cache /dev/null). Run from the repository root."""
import json
import struct

D = "fuzz/corpus/fuzz_prompt_cache/"
raw = open(D + "real_4_tokens.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
HDR, DATA = json.loads(raw[8:8 + n]), raw[8 + n:]


def tensors():
    return {k: v for k, v in HDR.items() if k != "__metadata__"}


def write(name, hdr, data, extra=b""):
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(D + name, "wb").write(struct.pack("<Q", len(h)) + h + data + extra)


def floats(name):
    b, e = HDR[name]["data_offsets"]
    return list(struct.unpack("<%df" % ((e - b) // 4), DATA[b:e]))


def rebuild(meta, fn=lambda name, xs: xs, dtype="F32"):
    hdr, data = {"__metadata__": meta}, b""
    for name, t in sorted(tensors().items(), key=lambda kv: kv[1]["data_offsets"]):
        xs = fn(name, floats(name))
        if dtype == "BF16":
            blob = b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", x))[0])[2:]
                            for x in xs)
        else:
            blob = struct.pack("<%df" % len(xs), *xs)
        hdr[name] = {"dtype": dtype, "shape": t["shape"],
                     "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    return hdr, data


meta = dict(HDR["__metadata__"])
# valid variants
m = {k: v for k, v in meta.items() if not k.startswith("lmc.")}
write("opaque_only.safetensors", *rebuild(m))
write("bf16.safetensors", *rebuild(meta, dtype="BF16"))
m = dict(meta, **{"lmc.prompt_cache.token_ids": "1,2", "lmc.prompt_cache.opaque_len": "2"})
write("half_opaque.safetensors", *rebuild(m))
# refused variants
write("nan_value.safetensors",
      *rebuild(meta, lambda nm, xs: xs[:5] + [float("nan")] + xs[6:] if nm == "layers.1.values" else xs))
write("inf_key.safetensors",
      *rebuild(meta, lambda nm, xs: [float("-inf")] + xs[1:] if nm == "layers.0.keys" else xs))
write("ids_mismatch.safetensors", *rebuild(dict(meta, **{"lmc.prompt_cache.token_ids": "0,1"})))
write("offset_short.safetensors", *rebuild(dict(meta, offset="2")))
write("layers_wrong.safetensors", *rebuild(dict(meta, num_layers="2")))
hdr, data = rebuild(meta)
write("trailing_bytes.safetensors", hdr, data, b"\0" * 8)
