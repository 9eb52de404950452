"""Data-layer throughput, one JSON line.

- decode + preprocess of 640x480 photo-like JPEGs to a (3, 224, 224) CLIP-normalised tensor: ours (`load_image`:
  reduced-DCT JPEG decode + bicubic + table-lookup normalisation) vs. the plain reference pipeline (PIL open, RGB,
  bicubic resize to 224x224, ToTensor + Normalize written with torch ops), both measured here, same files;
- `fsgr check-data`'s image check (open + 1/8-scale decode + RGB) per process and with a process pool, and the time
  that rate implies for full COCO (123,287 images);
- synthetic shapes generation rate (images/s, one process).

Usage: python benchmarks/bench_data.py [--images 200] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fsgr.data.check import _check_files
from fsgr.data.config import SyntheticConfig
from fsgr.data.images import CLIP_MEAN, CLIP_STD, load_image
from fsgr.data.synthetic import render


def photo_like(seed: int, w: int = 640, h: int = 480) -> Image.Image:
    """Smooth low-frequency structure + edges + texture + sensor noise: compresses and decodes like a photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(6):  # a few hard-edged regions
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(30, 150)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, size=3)
    img += 10 * np.sin(xx / rng.uniform(2, 6))[..., None] * (yy > h / 2)[..., None]  # texture in one half
    img += rng.normal(0, 4, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
STD = torch.tensor(CLIP_STD).view(3, 1, 1)


def baseline(path: str) -> torch.Tensor:
    img = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255.0)
    return (x - MEAN) / STD


def rate(fn, paths, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return len(paths) / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.images):
            p = Path(tmp) / f"{i:05d}.jpg"
            photo_like(i).save(p, quality=90)
            paths.append(str(p))
        size_kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
        # same output?  (mean absolute difference in 0..1 pixel units)
        diff = float(((load_image(paths[0]) - baseline(paths[0])) * STD).abs().mean())
        ours = rate(lambda p: load_image(p, 224, "squash"), paths)
        base = rate(baseline, paths)
        ours_full = rate(lambda p: load_image(p, 224, "squash", draft=False), paths)
        ours_clip = rate(lambda p: load_image(p, 224, "clip"), paths)
        t0 = time.perf_counter()
        bad = _check_files(paths, 1, progress=False)
        check_1 = len(paths) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        bad += _check_files(paths * 4, args.workers, progress=False)
        check_n = 4 * len(paths) / (time.perf_counter() - t0)
        assert not bad, bad[:3]
    cfg = SyntheticConfig(image_size=96)
    t0 = time.perf_counter()
    for i in range(200):
        render(i, cfg)
    synth = 200 / (time.perf_counter() - t0)
    print(json.dumps({
        "bench": "data",
        "images": args.images, "image_size": "640x480", "mean_jpeg_kb": round(size_kb, 1),
        "ours_img_per_s": round(ours, 1), "baseline_pil_img_per_s": round(base, 1),
        "speedup": round(ours / base, 2),
        "ours_no_draft_img_per_s": round(ours_full, 1), "ours_clip_resize_img_per_s": round(ours_clip, 1),
        "mean_abs_pixel_diff_vs_baseline": round(diff, 4),
        "check_img_per_s_1proc": round(check_1, 1), "check_workers": args.workers,
        "check_img_per_s_pool": round(check_n, 1),
        "check_full_coco_s_at_pool_rate": round(123287 / check_n, 1),
        "synthetic_render_img_per_s": round(synth, 1),
        "cpus": os.cpu_count(), "torch": torch.__version__,
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
