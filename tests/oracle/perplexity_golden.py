#!/usr/bin/env python3
"""Perplexity goldens for tests/lm/test_perplexity.c: stories260K
(models/stories260K) on tests/golden/perplexity/tinystories_style.txt,
computed with Hugging Face transformers by the sliding-window recipe of its
"Perplexity of fixed-length models" guide, for several (context, stride)
pairs:

    for begin in range(0, seq_len, stride):
        end = min(begin + context, seq_len)
        trg_len = end - prev_end
        labels = ids[begin:end] with all but the last trg_len set to -100
        loss = model(ids[begin:end], labels=labels).loss
        n = (labels != -100).sum() - 1          # the label shift
        nll_sum += loss * n; n_tokens += n; prev_end = end
        if end == seq_len: break
    perplexity = exp(nll_sum / n_tokens)

The input ids come from the checkpoint's tokenizer (special tokens added, as
`tokenizer(text)` does) and are written to the golden too, so the test also
checks lmc's encoding of the text.

    python3 tests/oracle/perplexity_golden.py            # transformers (float32 and float64)
    python3 tests/oracle/perplexity_golden.py --check    # print, do not write

--reference python computes the same recipe with a float64 forward written
here in plain Python (no torch), taking the ids from `build/tools/lmc
tokenize`; its output says so in "reference". It exists only to cross-check
the recipe where torch is absent; the committed golden is transformers'.

Writes tests/golden/perplexity/stories260K.json.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
from array import array

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "stories260K")
TEXT = os.path.join(ROOT, "tests", "golden", "perplexity", "tinystories_style.txt")
OUT = os.path.join(ROOT, "tests", "golden", "perplexity", "stories260K.json")
CASES = [(64, 32), (128, 96), (512, 256), (512, 512)]


def windows(n, context, stride):
    """(begin, end, trg_len) of each window, as the recipe walks them."""
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + context, n)
        yield begin, end, end - prev_end
        prev_end = end
        if end == n:
            break


def recipe(ids, context, stride, window_loss):
    """window_loss(window_ids, n_masked) -> mean NLL over the unmasked
    shifted labels (what transformers' loss returns)."""
    nll_sum, n_tokens, n_windows = 0.0, 0, 0
    for begin, end, trg in windows(len(ids), context, stride):
        w = ids[begin:end]
        masked = len(w) - trg
        n = trg - 1
        if n > 0:
            nll_sum += window_loss(w, masked) * n
        n_tokens += n
        n_windows += 1
    nll = nll_sum / n_tokens
    return {"context": context, "stride": stride, "nll": nll, "perplexity": math.exp(nll),
            "n_scored": n_tokens, "n_windows": n_windows}


# ---------------------------------------------------------------- transformers
def with_transformers():
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL)
    text = open(TEXT, encoding="utf-8").read()
    ids = tok(text, return_tensors="pt").input_ids
    out = {"reference": f"transformers {transformers.__version__}, torch {torch.__version__}",
           "input_ids": ids[0].tolist()}
    for dtype, key in ((torch.float32, "cases"), (torch.float64, "cases_float64")):
        model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=dtype).eval()

        def loss(w, masked):
            x = torch.tensor([w])
            labels = x.clone()
            labels[:, :masked] = -100
            with torch.no_grad():
                return float(model(x, labels=labels).loss)

        out[key] = [recipe(ids[0].tolist(), c, s, loss) for c, s in CASES]
    return out


# ------------------------------------------------- plain-Python float64 forward
def load_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        a, b = info["data_offsets"]
        v = array("f")
        v.frombytes(data[8 + n + a:8 + n + b])
        shape = info["shape"]
        flat = [float(x) for x in v]
        tensors[name] = [flat[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])] \
            if len(shape) == 2 else flat
    return tensors


def matvec(m, x):
    return [sum(a * b for a, b in zip(row, x)) for row in m]


def rmsnorm(x, w, eps):
    r = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * r * g for v, g in zip(x, w)]


class PlainLlama:
    def __init__(self):
        cfg = json.load(open(os.path.join(MODEL, "config.json")))
        self.cfg = cfg
        self.t = load_safetensors(os.path.join(MODEL, "model.safetensors"))
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        half = self.hd // 2
        self.inv_freq = [1.0 / cfg["rope_theta"] ** (2 * i / self.hd) for i in range(half)]

    def rope(self, v, pos):
        half = self.hd // 2
        out = []
        for h in range(len(v) // self.hd):
            x = v[h * self.hd:(h + 1) * self.hd]
            c = [math.cos(pos * f) for f in self.inv_freq] * 2
            s = [math.sin(pos * f) for f in self.inv_freq] * 2
            rot = [-a for a in x[half:]] + x[:half]
            out += [x[i] * c[i] + rot[i] * s[i] for i in range(self.hd)]
        return out

    def window_loss(self, w, masked):
        cfg, t, hd = self.cfg, self.t, self.hd
        nh, nkv, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
        layers = cfg["num_hidden_layers"]
        kcache = [[] for _ in range(layers)]
        vcache = [[] for _ in range(layers)]
        emb = t["model.embed_tokens.weight"]
        total, count = 0.0, 0
        for pos, tok in enumerate(w[:-1]):
            x = list(emb[tok])
            for li in range(layers):
                p = f"model.layers.{li}."
                n = rmsnorm(x, t[p + "input_layernorm.weight"], eps)
                q = self.rope(matvec(t[p + "self_attn.q_proj.weight"], n), pos)
                k = self.rope(matvec(t[p + "self_attn.k_proj.weight"], n), pos)
                v = matvec(t[p + "self_attn.v_proj.weight"], n)
                kcache[li].append(k)
                vcache[li].append(v)
                att = []
                for h in range(nh):
                    g = h // (nh // nkv)
                    qh = q[h * hd:(h + 1) * hd]
                    sc = [sum(a * b for a, b in zip(qh, kk[g * hd:(g + 1) * hd])) / math.sqrt(hd)
                          for kk in kcache[li]]
                    mx = max(sc)
                    e = [math.exp(s - mx) for s in sc]
                    z = sum(e)
                    att += [sum(e[j] / z * vcache[li][j][g * hd + d] for j in range(len(e)))
                            for d in range(hd)]
                x = [a + b for a, b in zip(x, matvec(t[p + "self_attn.o_proj.weight"], att))]
                n = rmsnorm(x, t[p + "post_attention_layernorm.weight"], eps)
                gt = matvec(t[p + "mlp.gate_proj.weight"], n)
                up = matvec(t[p + "mlp.up_proj.weight"], n)
                hmid = [a / (1.0 + math.exp(-a)) * b for a, b in zip(gt, up)]
                x = [a + b for a, b in zip(x, matvec(t[p + "mlp.down_proj.weight"], hmid))]
            if pos + 1 < masked:
                continue  # label pos + 1 is masked
            x = rmsnorm(x, t["model.norm.weight"], eps)
            logits = matvec(emb, x)
            mx = max(logits)
            lse = mx + math.log(sum(math.exp(v - mx) for v in logits))
            total += lse - logits[w[pos + 1]]
            count += 1
        return total / count


def with_plain_python():
    lmc = os.path.join(ROOT, "build", "tools", "lmc")
    out = subprocess.run([lmc, "tokenize", "-t", MODEL, "-f", TEXT], check=True,
                         capture_output=True, text=True).stdout
    ids = [int(x) for x in out.split()]
    model = PlainLlama()
    cases = []
    for c, s in CASES:
        cases.append(recipe(ids, c, s, model.window_loss))
        print(f"context {c} stride {s}: perplexity {cases[-1]['perplexity']:.9f}", file=sys.stderr)
    return {"reference": "plain-Python float64 forward in perplexity_golden.py (interim; "
                         "regenerate with transformers)",
            "input_ids": ids, "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", choices=("transformers", "python"), default="transformers")
    ap.add_argument("--check", action="store_true", help="print only")
    a = ap.parse_args()
    g = with_transformers() if a.reference == "transformers" else with_plain_python()
    g = {"model": "models/stories260K", "text": "tests/golden/perplexity/tinystories_style.txt",
         "recipe": "transformers perplexity of fixed-length models (sliding window)", **g}
    text = json.dumps(g, indent=1) + "\n"
    if a.check:
        sys.stdout.write(text)
    else:
        with open(OUT, "w") as f:
            f.write(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
