"""FSGR backbone cost against its own baseline, the plain CLIP image tower, measured in the same process.

Prints one JSON line: images/s of CLIP `visual(images)` (baseline) and of `FSGRBackbone` (100 deep prompts, adapters,
CSA branch) at ViT-B/16 size with random weights, their ratio, the CSA branch's SDPA form against the plain-matmul
form it replaces, and the time to fingerprint the image tower (done once per codebook check).

    python benchmarks/bench_backbone.py [--device cuda] [--batch 8] [--iters 5]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch


def _timeit(fn, iters: int, device: torch.device) -> float:
    fn()  # warm-up (allocations, kernel selection)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def main() -> None:
    from fsgr.models.backbone import FSGRBackbone, csa_attention
    from fsgr.models.clip import VisionTransformer, weights_fingerprint
    from fsgr.models.config import BackboneConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    visual = VisionTransformer(224, 16, 768, 12, 12, 512)
    t0 = time.perf_counter()
    fingerprint = weights_fingerprint(visual)
    fingerprint_s = time.perf_counter() - t0
    backbone = FSGRBackbone(visual, BackboneConfig()).to(device).eval()
    images = torch.randn(args.batch, 3, 224, 224, device=device)
    block = visual.transformer.resblocks[-1]
    z = torch.randn(args.batch, 196, 768, device=device)

    def csa_matmul():
        q, k, v = block.attn.qkv(block.ln_1(z))
        s = 1 / math.sqrt(q.shape[-1])
        a = torch.softmax(q @ q.transpose(-1, -2) * s, -1) + torch.softmax(k @ k.transpose(-1, -2) * s, -1)
        return block.attn.merge_heads(a @ v)

    with torch.no_grad():
        base = _timeit(lambda: visual(images), args.iters, device)
        ours = _timeit(lambda: backbone(images), args.iters, device)
        csa_sdpa = _timeit(lambda: csa_attention(block, z), args.iters * 3, device)
        csa_plain = _timeit(csa_matmul, args.iters * 3, device)
    print(json.dumps({
        "bench": "backbone", "device": str(device), "batch": args.batch, "tokens": 1 + 100 + 196,
        "clip_visual_images_per_s": round(args.batch / base, 2),
        "fsgr_backbone_images_per_s": round(args.batch / ours, 2),
        "backbone_over_clip_time": round(ours / base, 3),
        "csa_sdpa_ms": round(csa_sdpa * 1e3, 3), "csa_matmul_ms": round(csa_plain * 1e3, 3),
        "csa_speedup": round(csa_plain / csa_sdpa, 3),
        "fingerprint_s": round(fingerprint_s, 3), "fingerprint": fingerprint,
    }))


if __name__ == "__main__":
    main()
