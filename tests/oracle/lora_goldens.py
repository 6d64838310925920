#!/usr/bin/env python3
"""LoRA training references from transformers + PEFT for
tests/train/test_lora.c.

For several tiny checkpoints of tests/golden/models (llama with llama3 rope,
llama_linear with biases and linear rope, mistral with a sliding window
shorter than the sequences, qwen2 with q/k/v bias and LoRA on the last layer
only, qwen3 with q/k norm and tied embeddings, and the bf16 llama computed
in float64 from its bf16 weights) this builds a PEFT LoRA model, puts fixed
non-zero values into every lora_A / lora_B (so both get real gradients),
and on a fixed batch of two sequences with a prompt offset records:

  init.<key>    the starting adapter values (PEFT adapter_model keys)
  grad.<key>    d loss / d value, loss = mean cross-entropy over the target
                tokens of the batch (token j is a target when
                max(offset, 1) <= j < len, predicted from position j - 1)
  step3.<key>   the values after 3 torch.optim.AdamW steps on that batch
  lora_logits   last-position logits of sequence 0 with the initial adapters
  merged_logits the same after PEFT's merge_and_unload
  merged_weight one merged base weight (its name in the metadata)
  ids           the token ids of the batch, concatenated

Metadata: lens, offsets, r, alpha, targets, layers, loss, losses (before
each AdamW step and after the last), the AdamW settings, the PEFT key list,
and fp32_grad_max_rel (how far PEFT in float32 is from the float64
reference: the noise floor a float32 implementation can reach).
References are computed in float64 (values stored as float32; the initial
values are float32 numbers, so a float32 reader starts from the same point).
Also writes peft_adapter_config.json: PEFT's own adapter_config.json for the
llama case.

With --peft-load DIR (DIR/<case>/ holding adapters that lmc saved, e.g.
tests/golden/train/lmc_adapters, written by running test_lora with
LMC_LORA_WRITE_ADAPTERS=DIR), PEFT loads each of them instead: every
lora tensor PEFT holds must equal the file's (none missing or extra), and
OUT_DIR/peft_on_lmc.safetensors gets "<case>.logits" (last position of
sequence 0, float64 compute) and the batch loss in the metadata, which
tests/train/test_lora.c compares with lmc's own forward of the same files.

Usage: python3 lora_goldens.py OUT_DIR [--peft-load DIR]
"""
import json
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
import transformers
import peft
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file, load_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "tests", "golden", "models")
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name, model dir, rank, alpha, target modules, num_layers (-1: all)
CASES = [
    ("llama", "llama-fp32", 4, 8.0, ALL7, -1),
    ("llama_bf16", "llama-bf16", 4, 8.0, ["q_proj", "v_proj", "down_proj"], -1),
    ("llama_linear", "llama_linear-fp32", 4, 4.0, ["o_proj", "gate_proj", "up_proj", "down_proj"], -1),
    ("mistral", "mistral-fp32", 2, 8.0, ["q_proj", "v_proj"], -1),
    ("qwen2", "qwen2-fp32", 8, 4.0, ["q_proj", "k_proj", "v_proj", "o_proj"], 1),
    ("qwen3", "qwen3-fp32", 4, 16.0, ALL7, -1),
]
LENS = [24, 19]
OFFSETS = [6, 0]
LR, BETAS, EPS, WD = 1e-2, (0.9, 0.999), 1e-8, 0.1
STEPS = 3


def make_batch():
    g = torch.Generator().manual_seed(777)
    seqs = []
    for n in LENS:
        s = torch.randint(3, 512, (n,), generator=g).tolist()
        s[0] = 1
        seqs.append(s)
    return seqs


def batch_loss(model, seqs):
    total, count = 0.0, 0
    for s, off in zip(seqs, OFFSETS):
        ids = torch.tensor([s])
        logits = model(input_ids=ids).logits[0]
        lo = max(off, 1)
        tgt = torch.tensor(s[lo:])
        total = total + F.cross_entropy(logits[lo - 1:len(s) - 1], tgt, reduction="sum")
        count += len(s) - lo
    return total / count


def lora_params(pm):
    out = {}
    for n, p in pm.named_parameters():
        if "lora_" in n:
            out[n.replace(".default", "")] = p
    return out


def build(model_dir, r, alpha, targets, num_layers, dtype, init=None):
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                attn_implementation="eager")
    base = base.to(dtype)
    L = base.config.num_hidden_layers
    layers = list(range(L)) if num_layers < 0 else list(range(L - num_layers, L))
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                     bias="none", task_type="CAUSAL_LM",
                     layers_to_transform=None if num_layers < 0 else layers)
    pm = get_peft_model(base, cfg)
    pm = pm.to(dtype)
    params = lora_params(pm)
    if init is None:
        g = torch.Generator().manual_seed(4321)
        init = {}
        for k in sorted(params):
            p = params[k]
            if ".lora_A." in k:
                bound = 1.0 / p.shape[1] ** 0.5
                v = (torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
            else:
                v = 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64)
            init[k] = v.float()
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(init[k].to(dtype))
    pm.eval()
    return pm, params, init, layers


def run_case(out_dir, name, mdir, r, alpha, targets, num_layers, seqs):
    model_dir = os.path.join(MODELS, mdir)
    pm, params, init, layers = build(model_dir, r, alpha, targets, num_layers, torch.float64)
    loss = batch_loss(pm, seqs)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in params.items()}

    # float32 PEFT on the same values: the noise floor for a float32 port.
    pm32, params32, _, _ = build(model_dir, r, alpha, targets, num_layers, torch.float32, init)
    l32 = batch_loss(pm32, seqs)
    l32.backward()
    rel = 0.0
    for k, p in params32.items():
        g64 = grads[k]
        rel = max(rel, float((p.grad.double() - g64).abs().max() / g64.abs().max()))
    del pm32

    # Logits with the initial adapters, then merged.
    with torch.no_grad():
        lora_logits = pm(input_ids=torch.tensor([seqs[0]])).logits[0, -1].float()

    # 3 AdamW steps on the same batch.
    pm_t, params_t, _, _ = build(model_dir, r, alpha, targets, num_layers, torch.float64, init)
    opt = torch.optim.AdamW(list(params_t.values()), lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WD)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        l = batch_loss(pm_t, seqs)
        losses.append(float(l))
        l.backward()
        opt.step()
    with torch.no_grad():
        losses.append(float(batch_loss(pm_t, seqs)))
    step3 = {k: p.detach().float().clone() for k, p in params_t.items()}
    min_grad = min(float(g.abs().min()) for g in grads.values())

    with tempfile.TemporaryDirectory() as td:
        pm.save_pretrained(td)
        peft_keys = sorted(load_file(os.path.join(td, "adapter_model.safetensors")).keys())
        if name == "llama":
            with open(os.path.join(td, "adapter_config.json")) as f:
                cfg_text = f.read()
            with open(os.path.join(out_dir, "peft_adapter_config.json"), "w") as f:
                f.write(cfg_text)

    merged = pm.merge_and_unload()
    with torch.no_grad():
        merged_logits = merged(input_ids=torch.tensor([seqs[0]])).logits[0, -1].float()
    mw_name = "model.layers.%d.%s" % (layers[0], {
        "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj",
        "v_proj": "self_attn.v_proj", "o_proj": "self_attn.o_proj",
        "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
        "down_proj": "mlp.down_proj"}[targets[0]]) + ".weight"
    merged_weight = dict(merged.named_parameters())[mw_name].detach().float().clone()

    tensors = {"ids": torch.tensor([t for s in seqs for t in s], dtype=torch.int32),
               "lora_logits": lora_logits.contiguous(),
               "merged_logits": merged_logits.contiguous(),
               "merged_weight": merged_weight.contiguous()}
    for k in sorted(params):
        tensors["init." + k] = init[k].contiguous()
        tensors["grad." + k] = grads[k].float().contiguous()
        tensors["step3." + k] = step3[k].contiguous()
    meta = {
        "model": mdir, "lens": ",".join(map(str, LENS)),
        "offsets": ",".join(map(str, OFFSETS)), "r": str(r), "alpha": repr(alpha),
        "targets": ",".join(targets), "layers": ",".join(map(str, layers)),
        "num_layers": str(num_layers), "loss": repr(float(loss)),
        "losses": json.dumps(losses), "lr": repr(LR), "beta1": repr(BETAS[0]),
        "beta2": repr(BETAS[1]), "eps": repr(EPS), "weight_decay": repr(WD),
        "steps": str(STEPS), "peft_keys": ",".join(peft_keys),
        "merged_weight_name": mw_name, "fp32_loss": repr(float(l32)),
        "fp32_grad_max_rel": repr(rel), "min_abs_grad": repr(min_grad),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    save_file(tensors, os.path.join(out_dir, name + ".safetensors"), metadata=meta)
    print("%-13s loss %.6f fp32 %.6f  grad fp32-vs-fp64 max rel %.2e  min|g| %.2e  "
          "losses %s  n_params %d" % (name, float(loss), float(l32), rel, min_grad,
                                      ["%.5f" % x for x in losses], len(params)))


def peft_load(out_dir, adapters_dir):
    from peft import PeftModel
    seqs = make_batch()
    tensors, meta = {}, {}
    for name, mdir, *_ in CASES:
        d = os.path.join(adapters_dir, name)
        if not os.path.isdir(d):
            continue
        base = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, mdir),
                                                    dtype=torch.float32,
                                                    attn_implementation="eager").double()
        pm = PeftModel.from_pretrained(base, d).double()
        pm.eval()
        held = lora_params(pm)
        saved = load_file(os.path.join(d, "adapter_model.safetensors"))
        if sorted(held) != sorted(saved):
            raise SystemExit("%s: PEFT holds %s, file has %s" % (name, sorted(held), sorted(saved)))
        for k, v in saved.items():
            if not torch.equal(held[k].detach().float(), v.float()):
                raise SystemExit("%s: %s differs after loading" % (name, k))
        with torch.no_grad():
            tensors[name + ".logits"] = pm(input_ids=torch.tensor([seqs[0]])).logits[0, -1].float()
            meta[name + ".loss"] = repr(float(batch_loss(pm, seqs)))
        print("%-8s PEFT loaded %d tensors; loss %s" % (name, len(saved), meta[name + ".loss"]))
    meta.update(torch=torch.__version__, transformers=transformers.__version__,
                peft=peft.__version__)
    save_file(tensors, os.path.join(out_dir, "peft_on_lmc.safetensors"), metadata=meta)


def main():
    out_dir = sys.argv[1]
    if len(sys.argv) == 4 and sys.argv[2] == "--peft-load":
        os.makedirs(out_dir, exist_ok=True)
        peft_load(out_dir, sys.argv[3])
        return
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(8)
    print("torch", torch.__version__, "transformers", transformers.__version__,
          "peft", peft.__version__)
    seqs = make_batch()
    failed = 0
    for case in CASES:
        try:
            run_case(out_dir, *case, seqs)
        except Exception as e:  # keep the other cases
            import traceback
            traceback.print_exc()
            print("FAILED", case[0], e)
            failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
