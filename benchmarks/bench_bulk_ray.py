"""Bulk captioning on Ray Data (`fsgr caption --engine ray`) next to the plain bulk path (`fsgr caption --out`): images/s
on the same images with the same checkpoint and settings, and whether every caption agrees. Prints ONE JSON line.

    python benchmarks/bench_bulk_ray.py [--checkpoint CKPT] [--images 64] [--actors 2] [--cpus 2] [--workers 2]

Without --checkpoint: the demo architecture (configs/demo.yaml: the shipped tiny CLIP and codebook, an untrained decoder
whose captions run to max_len, the slowest case) saved as a checkpoint. Images: bench_serving's synthetic 224 px JPEGs. Ray runs on a local
cluster of --cpus CPUs started here (or the one RAY_ADDRESS names); its seconds count from the job's start, actors'
model loading included, `ray.init` not. The plain path's seconds include loading its Captioner, so both pay one model
load per worker. On a GPU cluster each actor takes a GPU; here each takes one CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import make_images  # noqa: E402

from fsgr.config import load_config, to_dict  # noqa: E402
from fsgr.core.build import build_model  # noqa: E402
from fsgr.core.checkpoint import FORMAT_VERSION, atomic_save  # noqa: E402
from fsgr.data.vocab import SPECIALS, Vocab  # noqa: E402
from fsgr.inference import Captioner  # noqa: E402
from fsgr.serving.bulk import caption_to_jsonl, read_caption_file  # noqa: E402
from fsgr.serving.bulk_ray import caption_with_ray  # noqa: E402


def demo_checkpoint(path: Path) -> Path:
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    words = "a the big small red green blue yellow circle square triangle star and on of left right above below".split()
    vocab = Vocab(list(SPECIALS) + words, source="bench")
    model, names, _ = build_model(cfg, vocab, load_weights=True)
    return atomic_save({"format_version": FORMAT_VERSION, "config": to_dict(cfg), "vocab_itos": list(vocab.itos),
                        "codebook_names": names, "model": model.state_dict()}, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--actors", type=int, default=2, help="Ray actors (one Captioner each)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--workers", type=int, default=2, help="the plain path's image-decoding processes")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--part-size", type=int, default=16)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = [str(p) for p in make_images(tmp / "images", args.images)]
        checkpoint = Path(args.checkpoint) if args.checkpoint else demo_checkpoint(tmp / "demo.pt")

        t0 = time.perf_counter()
        captioner = Captioner.from_checkpoint(checkpoint, device="cpu")
        settings = captioner.settings()
        caption_to_jsonl(captioner, paths, tmp / "plain.jsonl", settings, args.batch, args.workers, progress=False)
        plain_s = time.perf_counter() - t0

        ray.init(num_cpus=None if os.environ.get("RAY_ADDRESS") else args.cpus, include_dashboard=False,
                 log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        t0 = time.perf_counter()
        caption_with_ray(checkpoint, paths, tmp / "ray", batch_size=args.batch, part_size=args.part_size,
                         actors=args.actors, device="cpu")
        ray_s = time.perf_counter() - t0
        ray.shutdown()

        plain = {p: r["caption"] for p, r in read_caption_file(tmp / "plain.jsonl").rows.items()}
        by_ray = {p: r["caption"] for part in sorted((tmp / "ray").glob("part-*.jsonl"))
                  for p, r in read_caption_file(part).rows.items()}
    print(json.dumps({
        "bench": "bulk_ray", "images": len(paths), "checkpoint": str(args.checkpoint or "demo (untrained decoder)"),
        "plain_images_per_s": round(len(paths) / plain_s, 2), "plain_seconds": round(plain_s, 2),
        "plain_workers": args.workers, "plain_torch_threads": torch.get_num_threads(),
        "ray_images_per_s": round(len(paths) / ray_s, 2), "ray_seconds": round(ray_s, 2), "ray_actors": args.actors,
        "ray_cpus": args.cpus, "part_size": args.part_size, "batch": args.batch,
        "ray_over_plain": round(plain_s / ray_s, 3), "same_captions": plain == by_ray,
        "beam": settings.beam_size, "max_len": settings.max_len}))


if __name__ == "__main__":
    main()
