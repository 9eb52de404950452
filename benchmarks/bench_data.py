"""Data-layer throughput at COCO size, one JSON line.

- decode + preprocess to a (3, 224, 224) CLIP-normalised tensor, per COCO photo size (640x480, 640x427, 480x640,
  427x640, 500x375 and two large ones), files made from the two real COCO photos in tests/real_data and saved like
  COCO's (quality 90, 4:2:0): ours (`load_image`: libjpeg-turbo N/8 DCT-scaled decode + torch's uint8 antialiased
  bicubic by the exact picture size + normalisation) vs the plain reference pipeline (PIL open, RGB, bicubic resize
  to 224x224, ToTensor + Normalize written with torch ops), both measured here on the same files, interleaved, in
  CPU time of this one-thread process; plus the mean absolute pixel difference (0..1 units) of ours from a full
  decode + PIL bicubic (`load_image(draft=False)`);
- the whole training input pipeline (image-level `CaptionDataset` over those files with real Flickr8k captions,
  `collate_captions`, `make_loader` with worker processes, pinned memory when CUDA is present) in images/s: its cost
  per core (the same work in this process, CPU time), and wall time with one worker process and with `--workers`;
- `fsgr check-data`'s image check per process and with a process pool; synthetic shapes generation rate.

Usage: python benchmarks/bench_data.py [--per-size 30] [--workers N] [--batch 50]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fsgr.data.check import _check_files  # noqa: E402
from fsgr.data.config import SyntheticConfig  # noqa: E402
from fsgr.data.datasets import CaptionDataset, make_loader  # noqa: E402
from fsgr.data.images import CLIP_MEAN, CLIP_STD, load_image  # noqa: E402
from fsgr.data.records import ImageRecord  # noqa: E402
from fsgr.data.synthetic import render  # noqa: E402
from fsgr.data.vocab import Vocab  # noqa: E402
from fsgr.data.text import tokenize_captions  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / "tests" / "real_data"
PHOTOS = ["COCO_val2014_000000391895.jpg", "COCO_val2014_000000397133.jpg"]
# COCO's common sizes (most images are 640 on the long side) and two large ones; weights of the "coco_mix" figure
SIZES = {(640, 480): 4, (640, 427): 4, (480, 640): 2, (427, 640): 2, (500, 375): 1, (1024, 768): 0.5,
         (2048, 1536): 0.5}
MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
STD = torch.tensor(CLIP_STD).view(3, 1, 1)


def baseline(path: str) -> torch.Tensor:
    """The plain pipeline: PIL open, RGB, bicubic resize, ToTensor + Normalize."""
    img = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255.0)
    return (x - MEAN) / STD


def rates(fns: dict, paths: list[str], repeats: int = 5) -> dict[str, float]:
    """Images/s of each function in CPU time of this (one-thread) process, best of `repeats`, the functions
    interleaved: on a shared machine CPU time is what the work costs, wall time also counts other people's jobs."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            for p in paths:
                fn(p)
            best[name] = min(best[name], time.process_time() - t0)
    return {k: len(paths) / v for k, v in best.items()}


def make_photos(root: Path, per_size: int) -> dict[tuple[int, int], list[str]]:
    out = {}
    sources = [Image.open(REAL / name).convert("RGB") for name in PHOTOS]
    for (w, h) in SIZES:
        paths = []
        for i in range(per_size):
            src = sources[i % len(sources)]
            # a different crop per file, so the files are not byte-identical (the OS cache holds them all anyway)
            dx, dy = (i * 7) % 40, (i * 5) % 30
            crop = src.crop((dx, dy, src.width - 40 + dx, src.height - 30 + dy))
            p = root / f"{w}x{h}_{i:03d}.jpg"
            crop.resize((w, h), Image.BICUBIC).save(p, quality=90)
            paths.append(str(p))
        out[(w, h)] = paths
    return out


def flickr_captions(n_images: int) -> list[list[str]]:
    caps: dict[str, list[str]] = {}
    with gzip.open(REAL / "flickr8k_captions_2000.txt.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            key, _, text = line.strip().replace("\t", " ").partition(" ")
            caps.setdefault(key.split("#")[0], []).append(text)
    lists = [v for v in caps.values() if len(v) == 5]
    return [lists[i % len(lists)] for i in range(n_images)]


def loader_rate(records, vocab, workers: int, batch: int, epochs: int) -> float:
    """Images/s through the whole pipeline after the first batch (worker start-up excluded), wall time; with
    workers=0 the same work runs in this process and is timed in CPU time (the cost per core)."""
    ds = CaptionDataset(records, vocab, image_size=224, resize="squash", batching="image")
    loader = make_loader(ds, batch_size=batch, shuffle=True, workers=workers, pin_memory=True,
                         persistent_workers=workers > 0, drop_last=True, prefetch_factor=4)
    clock = time.perf_counter if workers else time.process_time
    best = 0.0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        it = iter(loader)
        next(it)
        t0, n = clock(), 0
        for b in it:
            n += b.images.shape[0]
        best = max(best, n / (clock() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-size", type=int, default=30, help="files per photo size")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=50, help="images per batch in the pipeline figure")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict = {"bench": "data"}
    with tempfile.TemporaryDirectory() as tmp:
        by_size = make_photos(Path(tmp), args.per_size)
        per_size, weights = {}, []
        mix_ours = mix_base = 0.0
        for (w, h), paths in by_size.items():
            r = rates({"ours": lambda p: load_image(p, 224, "squash"),
                       "baseline_pil": baseline,
                       "ours_full_decode": lambda p: load_image(p, 224, "squash", draft=False)}, paths)
            diff = np.mean([float(((load_image(p) - load_image(p, draft=False)) * STD).abs().mean())
                            for p in paths[:6]])
            with open(paths[0], "rb") as fh:
                dh, dw = simplejpeg.decode_jpeg_header(fh.read(), min_height=224, min_width=224)[:2]
            per_size[f"{w}x{h}"] = {"decoded_at": f"{dw}x{dh}", "ours_img_per_s": round(r["ours"], 1),
                                    "baseline_pil_img_per_s": round(r["baseline_pil"], 1),
                                    "speedup": round(r["ours"] / r["baseline_pil"], 2),
                                    "ours_full_decode_img_per_s": round(r["ours_full_decode"], 1),
                                    "mean_abs_pixel_diff_vs_full_decode": round(float(diff), 4)}
            weight = SIZES[(w, h)]
            mix_ours += weight / r["ours"]                   # seconds per image, weighted
            mix_base += weight / r["baseline_pil"]
            weights.append(weight)
        total = sum(weights)
        out.update({"coco_mix_ours_img_per_s": round(total / mix_ours, 1),
                    "coco_mix_baseline_pil_img_per_s": round(total / mix_base, 1),
                    "coco_mix_speedup": round(mix_base / mix_ours, 2),
                    "coco_mix_weights": {f"{w}x{h}": v for (w, h), v in SIZES.items()},
                    "per_size": per_size})

        # the whole input pipeline: COCO-common sizes only (the large ones are rare in COCO)
        paths = [p for (w, h), ps in by_size.items() if max(w, h) == 640 or (w, h) == (500, 375) for p in ps]
        captions = flickr_captions(len(paths))
        records = [ImageRecord(i, p, "train", tuple(c), tuple(range(5 * i, 5 * i + 5)))
                   for i, (p, c) in enumerate(zip(paths, captions))]
        vocab = Vocab.build(tokenize_captions([c for cs in captions for c in cs]), min_freq=1)
        out.update({"pipeline_images": len(records), "pipeline_batch_images": args.batch,
                    "pipeline_pin_memory": torch.cuda.is_available(),
                    "pipeline_img_per_s_per_core_cpu_time": round(loader_rate(records, vocab, 0, args.batch, 3), 1),
                    "pipeline_img_per_s_1_worker": round(loader_rate(records, vocab, 1, args.batch, 3), 1),
                    "pipeline_workers": args.workers,
                    "pipeline_img_per_s_n_workers": round(loader_rate(records, vocab, args.workers, args.batch, 3),
                                                          1)})

        t0 = time.perf_counter()
        bad = _check_files(paths, 1, progress=False)
        check_1 = len(paths) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        bad += _check_files(paths * 2, args.workers, progress=False)
        check_n = 2 * len(paths) / (time.perf_counter() - t0)
        assert not bad, bad[:3]
    cfg = SyntheticConfig(image_size=96)
    t0 = time.perf_counter()
    for i in range(200):
        render(i, cfg)
    synth = 200 / (time.perf_counter() - t0)
    out.update({
        "check_img_per_s_1proc": round(check_1, 1), "check_workers": args.workers,
        "check_img_per_s_pool": round(check_n, 1), "check_full_coco_s_at_pool_rate": round(123287 / check_n, 1),
        "synthetic_render_img_per_s": round(synth, 1),
        "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__,
        "simplejpeg": simplejpeg.__version__, "pillow": Image.__version__,
    })
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
