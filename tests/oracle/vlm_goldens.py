#!/usr/bin/env python3
"""Goldens for src/vlm image preprocessing (tests/vlm/test_vlm_image.c).

Two parts, written under tests/vlm/golden/:

  pillow  (needs Pillow + numpy; any machine)
    Small deterministic PNG inputs, the RGB pixels Pillow decodes from
    them, and Pillow's Image.resize output for every filter and a set of
    up/down/one-axis sizes -> pillow_resize.txt. Hugging Face's image
    processors resize through Pillow (and the torchvision uint8 path
    reproduces it), so this is the resize reference.

  hf      (needs transformers + torch; run on the GPU machine)
    The same PNGs through transformers' CLIPImageProcessor,
    SiglipImageProcessor and Qwen2VLImageProcessor (slow, Pillow-based
    classes) with the processor configs written next to them ->
    hf_<name>.txt holding the channel-major float32 pixel values.
    Qwen2-VL's flattened patches are folded back to C x H x W.

Usage: python3 tests/oracle/vlm_goldens.py [pillow] [hf]   (default: both
parts whose libraries are importable).

File format (one record per line, space separated):
  pixels <png> <w> <h> <hex RGB bytes, row-major>
  resize <png> <out_w> <out_h> <resample> <hex RGB bytes>
  config <name> <json file> <processor class actually used>
  output <name> <png> <c> <h> <w> <floats...>
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "vlm", "golden")

# Filters by the ids processor configs store in "resample".
FILTERS = [0, 1, 2, 3, 4, 5]
RESIZE_TARGETS = [(5, 4), (26, 18), (13, 4), (20, 9), (7, 15), (1, 1)]


def make_inputs(Image):
    """Deterministic inputs: a noisy RGB gradient, a gray and an RGBA image."""
    rng = random.Random(1234)
    os.makedirs(OUT, exist_ok=True)
    rgb = Image.new("RGB", (13, 9))
    rgb.putdata([(min(255, x * 19 + rng.randrange(40)), min(255, y * 28 + rng.randrange(30)),
                  rng.randrange(256)) for y in range(9) for x in range(13)])
    rgb.save(os.path.join(OUT, "rgb_13x9.png"))
    gray = Image.new("L", (6, 5))
    gray.putdata([rng.randrange(256) for _ in range(30)])
    gray.save(os.path.join(OUT, "gray_6x5.png"))
    rgba = Image.new("RGBA", (5, 4))
    rgba.putdata([tuple(rng.randrange(256) for _ in range(4)) for _ in range(20)])
    rgba.save(os.path.join(OUT, "rgba_5x4.png"))
    return ["rgb_13x9.png", "gray_6x5.png", "rgba_5x4.png"]


def pillow_part():
    from PIL import Image
    import numpy as np

    names = make_inputs(Image)
    lines = []
    for n in names:
        im = Image.open(os.path.join(OUT, n)).convert("RGB")
        a = np.asarray(im, dtype=np.uint8)
        lines.append(f"pixels {n} {im.width} {im.height} {a.tobytes().hex()}")
    src = Image.open(os.path.join(OUT, "rgb_13x9.png")).convert("RGB")
    for f in FILTERS:
        for w, h in RESIZE_TARGETS:
            r = src.resize((w, h), resample=f)
            a = np.asarray(r, dtype=np.uint8)
            lines.append(f"resize rgb_13x9.png {w} {h} {f} {a.tobytes().hex()}")
    with open(os.path.join(OUT, "pillow_resize.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("wrote", len(lines), "records to pillow_resize.txt")


HF_CONFIGS = {
    "clip": ("CLIPImageProcessor", {
        "do_resize": True, "size": {"shortest_edge": 8}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 6, "width": 6},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True}),
    "siglip": ("SiglipImageProcessor", {
        "do_resize": True, "size": {"height": 7, "width": 10}, "resample": 2,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True}),
    "qwen2vl": ("Qwen2VLImageProcessor", {
        "do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True,
        "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 4, "patch_size": 14,
        "temporal_patch_size": 2, "merge_size": 2}),
}


def qwen_unpatch(pv, grid, cfg):
    """Fold Qwen2-VL's (t*gh*gw, C*T*P*P) patches back to C x H x W (frame 0)."""
    import numpy as np
    t, gh, gw = (int(x) for x in grid)
    P, M, T = cfg["patch_size"], cfg["merge_size"], cfg["temporal_patch_size"]
    x = np.asarray(pv, dtype=np.float32).reshape(t, gh // M, gw // M, M, M, 3, T, P, P)
    # -> (t, T, C, gh/M, M, P, gw/M, M, P)
    x = x.transpose(0, 6, 5, 1, 3, 7, 2, 4, 8)
    x = x.reshape(t * T, 3, gh * P, gw * P)
    return x[0]


def hf_part():
    import numpy as np
    import transformers
    from PIL import Image

    names = make_inputs(Image)
    for key, (cls_name, cfg) in HF_CONFIGS.items():
        # transformers 5 takes the torchvision path by default when it is
        # installed; the Pillow-backed class ("...Pil") is the reference the
        # C resampler reproduces exactly.
        cls = getattr(transformers, cls_name + "Pil", None) or getattr(transformers, cls_name)
        proc = cls(**cfg)
        cfg_file = f"hf_{key}_preprocessor_config.json"
        with open(os.path.join(OUT, cfg_file), "w") as fh:
            json.dump(dict(cfg, image_processor_type=cls_name), fh, indent=1)
        lines = [f"config {key} {cfg_file} {type(proc).__name__}"]
        for n in names:
            im = Image.open(os.path.join(OUT, n))
            out = proc(images=im, return_tensors="np")
            pv = out["pixel_values"]
            if key == "qwen2vl":
                chw = qwen_unpatch(pv, out["image_grid_thw"][0], cfg)
            else:
                chw = np.asarray(pv, dtype=np.float32)[0]
            c, h, w = chw.shape
            vals = " ".join(f"{v:.9g}" for v in chw.reshape(-1))
            lines.append(f"output {key} {n} {c} {h} {w} {vals}")
        with open(os.path.join(OUT, f"hf_{key}.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print("wrote", f"hf_{key}.txt", "transformers", transformers.__version__)


def main():
    parts = sys.argv[1:]
    if not parts:
        parts = ["pillow"]
        try:
            import transformers  # noqa: F401
            parts.append("hf")
        except ImportError:
            print("transformers not importable: skipping the hf part")
    if "pillow" in parts:
        pillow_part()
    if "hf" in parts:
        hf_part()


if __name__ == "__main__":
    main()
