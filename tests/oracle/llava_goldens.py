#!/usr/bin/env python3
"""Tiny random-weight LLaVA checkpoints and transformers reference outputs
for tests/vlm/test_llava.c.

Writes under OUT_DIR (default tests/golden/vlm):
  img_a.png, img_b.jpg       deterministic test images (48x40 PNG, 37x53 JPEG)
  llava-fp32/, llava-bf16/   what save_pretrained writes for the model and the
                             LlavaProcessor (config, weights, tokenizer, chat
                             template, processor configs) plus golden.json

The checkpoint: CLIP vision tower (image 32, patch 8, hidden 32, 2 layers,
quick_gelu), projector 32 -> 64 -> 64 (gelu), llama text model (hidden 64,
2 layers, 4 heads / 2 kv heads), a byte-level BPE tokenizer of 320 ids
trained here with <image> as a special token. Weights are redrawn with a
wider spread than HF's init so greedy choices are not near-ties.

golden.json holds, per case (one image; two images in one prompt):
  prompt        the chat-templated text fed to the processor
  images        image files, in prompt order
  input_ids     the processor's ids (image token expanded)
  pixel_values  [C, H, W] + flat floats per image (from the processor)
  features      projector output (image tokens x text hidden), flat
  positions     prompt positions whose logits are kept; logits: those rows
  greedy        8 greedy tokens (one step at a time with the cache);
  margins       top1 - top2 at each step; generate: model.generate's tokens
and a "full" variant (vision_feature_select_strategy "full",
vision_feature_layer -1, vision hidden_act gelu; the same weights) for
the fp32 checkpoint. Reference computation: CPU, eager attention, in the
checkpoint's dtype.

  pixels_pil.json            the images through the Pillow-backed
                             CLIPImageProcessorPil (transformers 5 picks the
                             torchvision path by default when it is installed)

Usage: python3 llava_goldens.py [OUT_DIR]
       python3 llava_goldens.py pil [OUT_DIR]   (only pixels_pil.json)
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import transformers
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 4321
V = 320
IMAGE_TOKEN = "<image>"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
GEN = 8

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' }}{% else %}{{ 'ASSISTANT: ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ ' ' }}{% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

CORPUS = [
    "What is shown in this picture? Describe the colors and the shapes.",
    "The image shows a gradient of red and green with some noise on top.",
    "Compare these two images and tell me which one is brighter.",
    "USER: ASSISTANT: a cat, a dog, the sky, a tree, the sea and a house.",
    "Look at the picture and answer the question in one short sentence.",
] * 4


def make_images(out):
    rng = np.random.RandomState(7)
    h, w = 40, 48
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 5, y * 6, (x + y) * 3], -1) + rng.randint(0, 40, (h, w, 3))
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(os.path.join(out, "img_a.png"))
    h, w = 53, 37
    y, x = np.mgrid[0:h, 0:w]
    b = np.stack([255 - y * 4, x * 6, 128 + 60 * np.sin(x / 4.0) * np.cos(y / 5.0)], -1)
    b = b + rng.randint(-20, 20, (h, w, 3))
    Image.fromarray(np.clip(b, 0, 255).astype(np.uint8)).save(
        os.path.join(out, "img_b.jpg"), quality=95, subsampling=0)
    return ["img_a.png", "img_b.jpg"]


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=V, special_tokens=["<unk>", "<s>", "</s>", IMAGE_TOKEN, "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    from transformers import PreTrainedTokenizerFast
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                 unk_token="<unk>", pad_token="<pad>")
    hf.chat_template = CHAT_TEMPLATE
    return hf


def make_config(vocab):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    vc = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, image_size=32, patch_size=8,
                          hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32)
    tc = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1,
                     eos_token_id=2, pad_token_id=4, tie_word_embeddings=False,
                     rope_parameters=dict(rope_type="default", rope_theta=10000.0))
    return LlavaConfig(vision_config=vc, text_config=tc, image_token_index=3,
                       projector_hidden_act="gelu", vision_feature_select_strategy="default",
                       vision_feature_layer=-2, image_seq_length=16)


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "layrnorm" in name:
                if name.endswith("bias"):
                    v = 0.1 * torch.randn(p.shape, generator=gen)
                else:
                    v = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            elif name.endswith("bias"):
                v = 0.2 * torch.randn(p.shape, generator=gen)
            elif "embed_tokens" in name or "class_embedding" in name or "position_embedding" in name:
                v = torch.randn(p.shape, generator=gen)
            elif "lm_head" in name:
                v = 3.0 * torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
            elif p.ndim == 4:  # patch conv
                v = 1.5 * torch.randn(p.shape, generator=gen) / (p[0].numel()) ** 0.5
            else:
                v = 1.5 * torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
            p.copy_(v.to(p.dtype))


def fl(t, fmt="%.7g"):
    return [float(fmt % x) for x in t.reshape(-1).tolist()]


def run_case(model, proc, name, text, image_files, img_dir, image_token_id):
    from transformers import DynamicCache
    images = [Image.open(os.path.join(img_dir, f)) for f in image_files]
    inputs = proc(images=images, text=text, return_tensors="pt")
    ids = inputs["input_ids"]
    pv = inputs["pixel_values"]
    dt = next(model.parameters()).dtype
    with torch.no_grad():
        feats = model.model.get_image_features(pixel_values=pv.to(dt))
        if hasattr(feats, "pooler_output"):
            feats = feats.pooler_output
        if isinstance(feats, (list, tuple)):
            feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats], 0)
        cache = DynamicCache(config=model.config.get_text_config())
        out = model(input_ids=ids, pixel_values=pv.to(dt), past_key_values=cache, use_cache=True)
        logits_all = out.logits[0].float()
        toks, margins = [], []
        logits = logits_all[-1]
        past = out.past_key_values
        for _ in range(GEN):
            top = torch.topk(logits, 2)
            t = int(top.indices[0])
            toks.append(t)
            margins.append(float(top.values[0] - top.values[1]))
            o = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
            past = o.past_key_values
            logits = o.logits[0, -1].float()
        gen_ids = None
        try:
            g = model.generate(**{k: (v.to(dt) if k == "pixel_values" else v)
                                  for k, v in inputs.items()},
                               max_new_tokens=GEN, do_sample=False, eos_token_id=None,
                               pad_token_id=4)
            gen_ids = g[0, ids.shape[1]:].tolist()
        except Exception as e:  # recorded, not fatal
            print("generate failed:", e)
    idl = ids[0].tolist()
    img_pos = [i for i, t in enumerate(idl) if t == image_token_id]
    n = len(idl)
    positions = sorted(set([0, img_pos[0], img_pos[len(img_pos) // 2], img_pos[-1],
                            min(img_pos[-1] + 1, n - 1), n - 2, n - 1]))
    case = dict(
        name=name, prompt=text, images=image_files, input_ids=idl,
        attention_mask=inputs["attention_mask"][0].tolist(),
        pixel_values=[dict(shape=list(pv[i].shape), values=fl(pv[i].float(), "%.9g"))
                      for i in range(pv.shape[0])],
        features_shape=list(feats.shape), features=fl(feats.float()),
        positions=positions, logits=[fl(logits_all[p]) for p in positions],
        greedy=toks, margins=[float("%.5g" % m) for m in margins], generate=gen_ids,
    )
    print(name, "n_ids", n, "image tokens", len(img_pos), "pixel", list(pv.shape),
          "greedy", toks, "generate", gen_ids, "min margin %.4g" % min(margins))
    return case


IMAGE_PROCESSOR_KW = dict(do_resize=True, size={"shortest_edge": 32}, resample=3,
                          do_center_crop=True, crop_size={"height": 32, "width": 32},
                          do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                          image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)


def pil_pixels(out, image_files):
    """The test images through transformers' Pillow-backed CLIP image
    processor (the default class takes the torchvision path when torchvision
    is installed) -> pixels_pil.json."""
    import transformers
    cls = getattr(transformers, "CLIPImageProcessorPil", None)
    if cls is None:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as cls
    ip = cls(**IMAGE_PROCESSOR_KW)
    rec = dict(transformers=transformers.__version__, image_processor=type(ip).__name__,
               images={})
    for f in image_files:
        pv = ip(images=Image.open(os.path.join(out, f)), return_tensors="np")["pixel_values"][0]
        rec["images"][f] = dict(shape=list(pv.shape), values=fl(torch.from_numpy(np.asarray(pv, dtype=np.float32)), "%.9g"))
    with open(os.path.join(out, "pixels_pil.json"), "w") as fh:
        json.dump(rec, fh)
    print("wrote pixels_pil.json with", type(ip).__name__)


def main():
    args = sys.argv[1:]
    pil_only = bool(args) and args[0] == "pil"
    if pil_only:
        args = args[1:]
    out = args[0] if args else os.path.join(HERE, "..", "golden", "vlm")
    if pil_only:
        pil_pixels(out, ["img_a.png", "img_b.jpg"])
        return
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    from transformers import (AutoProcessor, CLIPImageProcessor, LlavaForConditionalGeneration,
                              LlavaProcessor)
    image_files = make_images(out)
    tok = make_tokenizer()
    assert len(tok) == V, len(tok)
    image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    cfg = make_config(len(tok))
    ip = CLIPImageProcessor(**IMAGE_PROCESSOR_KW)
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8,
                          vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
                          image_token=IMAGE_TOKEN)
    base = LlavaForConditionalGeneration(cfg)
    randomize(base, gen)
    base.eval()
    msgs1 = [{"role": "user", "content": [{"type": "image"},
                                          {"type": "text", "text": "What is shown here?"}]}]
    msgs2 = [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                          {"type": "text", "text": "Compare these two."}]}]
    for dtname, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        d = os.path.join(out, "llava-" + dtname)
        m = copy.deepcopy(base).to(dt)
        m.save_pretrained(d, safe_serialization=True)
        proc.save_pretrained(d)
        print(d, "files:", sorted(os.listdir(d)))
        for fn in ("config.json", "processor_config.json", "preprocessor_config.json",
                   "tokenizer_config.json"):
            if os.path.exists(os.path.join(d, fn)):
                print("----", fn)
                print(open(os.path.join(d, fn)).read())
        rp = AutoProcessor.from_pretrained(d)
        print("reloaded processor:", type(rp).__name__, type(rp.image_processor).__name__,
              type(rp.tokenizer).__name__)
        ref = LlavaForConditionalGeneration.from_pretrained(d, dtype=dt,
                                                            attn_implementation="eager")
        ref.eval()
        from safetensors import safe_open
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            keys = sorted(f.keys())
        print("weight prefixes:", sorted(set(".".join(k.split(".")[:3]) for k in keys)))
        t1 = rp.apply_chat_template(msgs1, add_generation_prompt=True, tokenize=False)
        t2 = rp.apply_chat_template(msgs2, add_generation_prompt=True, tokenize=False)
        cases = [run_case(ref, rp, "one", t1, image_files[:1], out, image_token_id),
                 run_case(ref, rp, "two", t2, image_files, out, image_token_id)]
        plain = tok(t1)["input_ids"]
        golden = dict(transformers=transformers.__version__, torch=torch.__version__,
                      dtype=dtname, image_token_id=image_token_id,
                      image_processor=type(rp.image_processor).__name__,
                      tokenized_template_one=plain, cases=cases)
        if dtname == "fp32":
            # Pillow's decode of the JPEG (stb_image is compared against it).
            jb = np.asarray(Image.open(os.path.join(out, "img_b.jpg")).convert("RGB"))
            golden["img_b_rgb_hex"] = jb.tobytes().hex()
            # The "full" variant: same weights, other selection and activation.
            cfg2 = copy.deepcopy(ref.config)
            cfg2.vision_feature_select_strategy = "full"
            cfg2.vision_feature_layer = -1
            cfg2.vision_config.hidden_act = "gelu"
            try:
                m2 = LlavaForConditionalGeneration._from_config(cfg2, attn_implementation="eager")
                m2.load_state_dict(ref.state_dict())
                m2.eval()
                p2 = copy.deepcopy(rp)
                p2.vision_feature_select_strategy = "full"
                golden["full"] = dict(
                    config=dict(vision_feature_select_strategy="full", vision_feature_layer=-1,
                                vision_hidden_act="gelu"),
                    cases=[run_case(m2, p2, "one", t1, image_files[:1], out, image_token_id)])
            except Exception as e:  # recorded, not fatal
                import traceback
                traceback.print_exc()
                print("full variant failed:", e)
        with open(os.path.join(d, "golden.json"), "w") as fh:
            json.dump(golden, fh)
    pil_pixels(out, image_files)
    total = 0
    for root, _, files in os.walk(out):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print("total bytes", total)


if __name__ == "__main__":
    main()
