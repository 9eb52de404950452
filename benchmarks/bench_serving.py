"""Serving speed: `fsgr serve` latency and requests/s (one client vs 8 concurrent: batching), and bulk captioning
(`fsgr caption --out`) vs `fsgr evaluate`'s decode loop on the same images. Prints ONE JSON line.

Targets (issue 13): a single 224 px image answered in well under a second on a CPU with the demo checkpoint; 8
concurrent clients get more requests/s than one at a time; bulk captioning at least as many images/s as evaluate.

    python benchmarks/bench_serving.py [--checkpoint runs/demo/checkpoints/best.pt] [--images 96] [--requests 48]

Without --checkpoint: the demo architecture with the shipped tiny CLIP and codebook and an untrained decoder (its
captions run to max_len: the slowest case). Images: synthetic 224 px JPEGs of coloured shapes.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

import torch
from PIL import Image, ImageDraw


def demo_captioner():
    from fsgr.config import load_config
    from fsgr.data.vocab import SPECIALS, Vocab
    from fsgr.inference import Captioner
    from fsgr.core.build import build_model

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    words = "a an the big small red green blue yellow purple orange circle square triangle star and on of left " \
            "right above below next to".split()
    vocab = Vocab(list(SPECIALS) + words, source="bench")
    model, names, _ = build_model(cfg, vocab, load_weights=True)
    return Captioner(model, vocab, cfg, torch.device("cpu"), names)


def make_images(folder: Path, n: int, size: int = 224) -> list[Path]:
    rng = random.Random(0)
    paths = []
    for i in range(n):
        img = Image.new("RGB", (size, size), tuple(rng.randint(150, 230) for _ in range(3)))
        d = ImageDraw.Draw(img)
        for _ in range(rng.randint(1, 3)):
            x, y, s = rng.randint(0, size - 60), rng.randint(0, size - 60), rng.randint(30, 60)
            colour = tuple(rng.randint(0, 255) for _ in range(3))
            (d.ellipse if rng.random() < 0.5 else d.rectangle)([x, y, x + s, y + s], fill=colour)
        path = folder / f"{i:06d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def _post(url: str, data: bytes) -> float:
    boundary = "benchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n").encode() \
        + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/api/caption", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        json.loads(r.read())
    return time.perf_counter() - t0


def bench_server(captioner, images: list[bytes], requests: int, clients: int) -> dict:
    import uvicorn

    from fsgr.serving.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(captioner)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    for data in images[:3]:
        _post(url, data)                                          # warm-up
    latencies = []
    t0 = time.perf_counter()
    for i in range(requests):
        latencies.append(_post(url, images[i % len(images)]))
    sequential = requests / (time.perf_counter() - t0)
    app.state.batcher.batch_sizes.clear()

    def client(k: int) -> None:
        for i in range(k, requests, clients):
            _post(url, images[i % len(images)])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent = requests / (time.perf_counter() - t0)
    batches = dict(sorted(app.state.batcher.batch_sizes.items()))
    server.should_exit = True
    thread.join(timeout=10)
    return {"single_image_latency_s_median": round(statistics.median(latencies), 4),
            "single_image_latency_s_max": round(max(latencies), 4),
            "requests_per_s_one_client": round(sequential, 2),
            f"requests_per_s_{clients}_clients": round(concurrent, 2),
            "concurrency_speedup": round(concurrent / sequential, 2), "batch_sizes": batches}


def bench_bulk_vs_evaluate(captioner, paths: list[Path], workers: int, batch: int) -> dict:
    from fsgr.data.records import ImageRecord
    from fsgr.serving.bulk import caption_to_jsonl
    from fsgr.training.evaluation import evaluate_split

    settings = captioner.settings()
    records = [ImageRecord(image_id=i, path=str(p), split="test", captions=("a shape",), annotation_ids=(i,))
               for i, p in enumerate(paths)]
    cfg = captioner.cfg
    cfg.eval.metrics = "bleu"
    # warm-up (first-call allocations), then the two alternate twice: each side's better run is reported
    evaluate_split(captioner.model, records[:8], captioner.vocab, cfg, captioner.device, with_loss=False)
    evaluate_rates, bulk_rates = [], []
    for _ in range(2):
        t0 = time.perf_counter()
        evaluate_split(captioner.model, records, captioner.vocab, cfg, captioner.device, with_loss=False)
        evaluate_rates.append(len(paths) / (time.perf_counter() - t0))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            caption_to_jsonl(captioner, [str(p) for p in paths], Path(tmp) / "caps.jsonl", settings,
                             batch_size=batch, workers=workers, progress=False)
            bulk_rates.append(len(paths) / (time.perf_counter() - t0))
    evaluate_rate, bulk_rate = max(evaluate_rates), max(bulk_rates)
    return {"evaluate_images_per_s": round(evaluate_rate, 2), "bulk_images_per_s": round(bulk_rate, 2),
            "bulk_over_evaluate": round(bulk_rate / evaluate_rate, 2), "bulk_workers": workers,
            "bulk_batch": batch, "evaluate_batch": cfg.eval.batch_images}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--images", type=int, default=96, help="images for bulk vs evaluate")
    ap.add_argument("--requests", type=int, default=48, help="requests per server measurement")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="bulk captioning's decoding workers")
    ap.add_argument("--batch", type=int, default=None,
                    help="bulk captioning's batch size (default: eval.batch_images, as `fsgr caption --out` and evaluate)")
    args = ap.parse_args()
    from fsgr.inference import Captioner

    captioner = Captioner.from_checkpoint(args.checkpoint, device="cpu") if args.checkpoint else demo_captioner()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images)
        uploads = [p.read_bytes() for p in paths[:16]]
        result = {"bench": "serving", "checkpoint": args.checkpoint or "demo architecture, untrained decoder",
                  "torch_threads": torch.get_num_threads(), "image_px": 224,
                  "decoding": asdict(captioner.settings())}
        result.update(bench_server(captioner, uploads, args.requests, args.clients))
        result.update(bench_bulk_vs_evaluate(captioner, paths, args.workers,
                                             args.batch or captioner.cfg.eval.batch_images))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
