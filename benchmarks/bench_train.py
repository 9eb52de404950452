"""Throughput of XE training steps (forward + NLL + 0.25 x SupCon + backward + Adam), in captions per second, with
caption-level batching (the reference: one image row per caption, the backbone runs once per caption) and image-level
batching (each image once with its 5 captions), measured in the same process on the same model.

    python benchmarks/bench_train.py [--device cpu|cuda] [--size paper|small] [--batch 50] [--steps 3]

paper = CLIP ViT-B/16 (random weights), 100 deep prompts, adapters 6-11, 4,585-concept codebook, 2+3 layers of d 512,
vocabulary 10,201. Prints ONE JSON line; `speedup_image_vs_caption` is the ratio of the two captions/s figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fsgr.models.config import ModelConfig  # noqa: E402
from fsgr.core.device import resolve_amp  # noqa: E402
from fsgr.training.losses import nll_sum, supcon_loss  # noqa: E402


def model_config(size: str) -> ModelConfig:
    cfg = ModelConfig()
    if size == "small":
        c = cfg.clip
        c.embed_dim, c.image_resolution, c.vision_layers, c.vision_width, c.vision_patch_size = 64, 64, 2, 128, 16
        c.vision_heads, c.transformer_width, c.transformer_heads, c.transformer_layers = 4, 64, 2, 1
        cfg.backbone.prompts.num_tokens = 4
        cfg.backbone.adapters.first_block, cfg.backbone.adapters.last_block = 0, 1
        cfg.semantic.codebook_size, cfg.semantic.topk = 64, 8
        for part in (cfg.encoder, cfg.decoder):
            part.layers, part.d_model, part.heads, part.d_ff = 1, 128, 4, 256
    return cfg


def measure(model, optimizer, images, tokens, image_index, steps: int, amp_dtype, device) -> float:
    """Seconds per optimiser step (after one warm-up step)."""
    def step():
        ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else torch.autocast("cpu", enabled=False)
        with ctx:
            out = model(images, tokens, image_index)
        nll, count = nll_sum(out.logprobs, tokens, pad_id=1)
        feats = out.contrast_feats
        loss = nll / count + 0.25 * supcon_loss(feats.reshape(-1, feats.shape[-1]), out.concept_ids.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    from fsgr.models.captioner import FSGRCaptioner

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", choices=["paper", "small"], default="paper")
    p.add_argument("--batch", type=int, default=None, help="captions per step (default: 50 on GPU, 10 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per mode (default: 10 on GPU, 2 on CPU)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    args = p.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (50 if device.type == "cuda" else 10)
    steps = args.steps or (10 if device.type == "cuda" else 2)
    per_image = 5
    if batch % per_image:
        raise SystemExit(f"--batch {batch} must be a multiple of {per_image}")
    torch.manual_seed(0)
    cfg = model_config(args.size)
    vocab = 10201 if args.size == "paper" else 500
    model = FSGRCaptioner(cfg, vocab_size=vocab).to(device).train()
    groups = model.parameter_groups()
    optimizer = torch.optim.Adam([{"params": v} for v in groups.values() if v], lr=1e-5, betas=(0.9, 0.98))
    amp_dtype = resolve_amp(args.amp, device) if not (device.type == "cpu" and args.amp != "off") else None
    res = cfg.clip.image_resolution
    length = 14                                                  # a typical COCO caption + <bos>/<eos>
    tokens = torch.randint(4, vocab, (batch, length), device=device)
    tokens[:, 0], tokens[:, -1] = 2, 3
    n_img = batch // per_image
    images_img = torch.randn(n_img, 3, res, res, device=device)
    # caption level: one image row per caption (each image repeated for its 5 captions, as the reference's loader)
    images_cap = images_img.repeat_interleave(per_image, dim=0)
    # image level first: the caption-level run leaves the allocator with 5x larger activations behind
    t_img = measure(model, optimizer, images_img, tokens,
                    torch.arange(n_img, device=device).repeat_interleave(per_image), steps, amp_dtype, device)
    t_cap = measure(model, optimizer, images_cap, tokens, torch.arange(batch, device=device), steps, amp_dtype, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({
        "bench": "train_xe_step", "size": args.size, "device": name, "amp": str(amp_dtype or "fp32"),
        "threads": torch.get_num_threads(), "captions_per_step": batch, "steps": steps,
        "caption_level_captions_per_s": round(batch / t_cap, 2),
        "image_level_captions_per_s": round(batch / t_img, 2),
        "speedup_image_vs_caption": round(t_cap / t_img, 2),
    }))


if __name__ == "__main__":
    main()
