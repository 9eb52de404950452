"""One XE training step of the whole captioner at paper size: forward + backward + Adam step.

Builds configs/fsgr_coco.yaml's model with random weights (nothing read or downloaded; V = model.decoder.vocab_size),
feeds random images (B, 3, 224, 224) with `--captions` random captions of `--len` tokens each (image-level batching),
and reports images/s, captions/s and peak memory. In-process baselines: the forward pass alone and the backbone
forward alone. AMP bf16 where supported (CUDA with bf16; `--amp off` for fp32). Prints ONE JSON line.

    python benchmarks/bench_forward.py [--device cuda] [--images 10] [--captions 5] [--amp auto|bf16|off]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time
from pathlib import Path

import torch

from fsgr.config import load_config
from fsgr.models.captioner import FSGRCaptioner

ROOT = Path(__file__).resolve().parents[1]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "fsgr_coco.yaml"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=None, help="images per step (default: 10 on GPU, 2 on CPU)")
    ap.add_argument("--captions", type=int, default=5, help="captions per image")
    ap.add_argument("--len", type=int, default=16, help="tokens per caption incl. <bos>/<eos>")
    ap.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps (default: 10 on GPU, 2 on CPU)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    images_n = args.images or (10 if gpu else 2)
    repeats = args.repeats or (10 if gpu else 2)
    bf16 = args.amp == "bf16" or (args.amp == "auto" and gpu and torch.cuda.is_bf16_supported())
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    cfg = load_config(args.config)
    torch.manual_seed(0)
    vocab = cfg.model.decoder.vocab_size
    model = FSGRCaptioner(cfg.model, vocab_size=vocab).to(device).train()
    groups = model.parameter_groups()
    optimizer = torch.optim.Adam([{"params": groups["backbone"]}, {"params": groups["captioner"]}], lr=1e-5,
                                 betas=(0.9, 0.98))
    res = cfg.model.clip.image_resolution
    images = torch.randn(images_n, 3, res, res, device=device)
    n = images_n * args.captions
    tokens = torch.randint(4, vocab, (n, args.len), device=device)
    tokens[:, 0], tokens[:, -1] = 2, 3
    image_index = torch.arange(images_n, device=device).repeat_interleave(args.captions)

    def train_step():
        with autocast():
            out = model(images, tokens, image_index)
        loss = torch.nn.functional.nll_loss(out.logprobs[:, :-1].reshape(-1, vocab), tokens[:, 1:].reshape(-1),
                                            ignore_index=1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    def forward_only():
        with torch.no_grad(), autocast():
            return model(images, tokens, image_index).logprobs

    def backbone_only():
        with torch.no_grad(), autocast():
            return model.backbone(images).patch_tokens

    def timed(fn):
        fn()
        _sync(device)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        return best

    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    t_step = timed(train_step)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_fwd = timed(forward_only)
    t_bb = timed(backbone_only)
    print(json.dumps({
        "bench": "forward", "device": torch.cuda.get_device_name(device) if gpu else "cpu", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "amp": "bf16" if bf16 else "fp32", "images": images_n,
        "captions": n, "caption_len": args.len, "vocab": vocab,
        "train_step_s": round(t_step, 4), "images_per_s": round(images_n / t_step, 2),
        "captions_per_s": round(n / t_step, 2),
        "forward_only_s": round(t_fwd, 4), "backbone_forward_s": round(t_bb, 4),
        "step_over_forward": round(t_step / t_fwd, 2),
        "peak_memory_mib": round(peak, 1), "peak_memory_kind": "cuda_max_allocated" if gpu else "process_max_rss",
    }))


if __name__ == "__main__":
    main()
