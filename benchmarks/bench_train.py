"""Throughput of training steps, in the same process on the same model, one JSON line.

XE (forward + NLL + 0.25 x SupCon + backward + Adam, fused where the device has it), in captions/s:
- caption-level batching (the reference: one image row per caption, the backbone runs once per caption) and
  image-level batching (each image once with its 5 captions), on synthetic tensors (the model alone);
- the same two with the real input pipeline in the loop: COCO-size JPEGs made from the real COCO photos in
  tests/real_data, real Flickr8k captions, `CaptionDataset` + `make_loader` (`--workers` processes, pinned memory
  when CUDA is there), each batch copied to the device with non_blocking=True.
SCST (encode without backbone gradients, sample 5 captions per image, CIDEr-D reward against the references,
mean-of-others baseline, backward + Adam), in images/s, with the decoder's key/value cache and without it.

    python benchmarks/bench_train.py [--device cpu|cuda] [--size paper|small] [--batch 50] [--steps 3] [--workers 4]

paper = CLIP ViT-B/16 (random weights), 100 deep prompts, adapters 6-11, 4,585-concept codebook, 2+3 layers of d 512,
vocabulary 10,201. Random weights rarely sample <eos>, so SCST captions run to max_len (20): the slow end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import flickr_captions, make_photos  # noqa: E402
from fsgr.data.datasets import CaptionDataset, make_loader  # noqa: E402
from fsgr.data.records import ImageRecord  # noqa: E402
from fsgr.data.text import tokenize_captions  # noqa: E402
from fsgr.data.vocab import Vocab  # noqa: E402
from fsgr.metrics.reward import CiderDReward  # noqa: E402
from fsgr.models import decoding  # noqa: E402
from fsgr.models.config import ModelConfig  # noqa: E402
from fsgr.core.device import resolve_amp  # noqa: E402
from fsgr.training.engine import fused_adam_supported  # noqa: E402
from fsgr.training.losses import (nll_sum, scst_baseline, scst_sample_loss, supcon_loss,  # noqa: E402
                                  through_eos_mask)


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


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device, amp_dtype):
    return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else torch.autocast("cpu", enabled=False)


def xe_step(model, optimizer, images, tokens, image_index, amp_dtype, device) -> None:
    with _autocast(device, amp_dtype):
        out = model(images, tokens, image_index)
    nll, count = nll_sum(out.logprobs, tokens, pad_id=1)
    feats = out.contrast_feats
    loss = nll / count + 0.25 * supcon_loss(feats.reshape(-1, feats.shape[-1]), out.concept_ids.reshape(-1))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed(batches, step, steps: int, device) -> float:
    """Seconds per step over `steps` steps after one warm-up step; `batches` yields the steps' inputs."""
    step(*next(batches))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    _sync(device)
    return (time.perf_counter() - t0) / steps


def repeat(*tensors):
    while True:
        yield tensors


def from_loader(loader, device):
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        yield batch.images, batch.tokens, batch.image_index


def scst_step(model, optimizer, reward, words, images, image_ids, use_cache, amp_dtype, device, samples=5,
              max_len=20) -> None:
    with _autocast(device, amp_dtype):
        encoded = model.encode(images, backbone_grad=False)
        tokens, logprobs = decoding.sample(model, encoded, num_samples=samples, max_len=max_len,
                                           use_cache=use_cache)
    captions = [" ".join(words(t) for t in row if t > 3) for img in tokens.tolist() for row in img]
    ids = [i for i in image_ids for _ in range(samples)]
    rewards = torch.as_tensor(reward(ids, captions), dtype=torch.float32).view(-1, samples).to(device)
    loss, count = scst_sample_loss(logprobs.float(), through_eos_mask(tokens, 3),
                                   rewards - scst_baseline(rewards, "sample"))
    (loss / max(count, 1)).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def real_data(root: Path, images: int):
    """COCO-size JPEGs (bench_data's), 5 Flickr8k captions each, as training records + their vocabulary."""
    per_size = math.ceil(images / 7)
    paths = [p for ps in make_photos(root, per_size).values() for p in ps][:images]
    captions = flickr_captions(len(paths))
    records = [ImageRecord(i, p, "train", tuple(c), tuple(range(5 * i, 5 * i + 5)))
               for i, (p, c) in enumerate(zip(paths, captions))]
    vocab = Vocab.build(tokenize_captions([c for cs in captions for c in cs]), min_freq=1)
    return records, vocab


def main() -> None:
    from fsgr.models.captioner import FSGRCaptioner

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", choices=["paper", "small"], default="paper")
    p.add_argument("--batch", type=int, default=None, help="captions per XE step (default: 50 on GPU, 10 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per mode (default: 10 on GPU, 2 on CPU)")
    p.add_argument("--scst-images", type=int, default=None, help="images per SCST step (default: 50 GPU, 2 CPU)")
    p.add_argument("--workers", type=int, default=4, help="loader worker processes")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    args = p.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (50 if gpu else 10)
    steps = args.steps or (10 if gpu else 2)
    scst_images = args.scst_images or (50 if gpu else 2)
    per_image = 5
    if batch % per_image:
        raise SystemExit(f"--batch {batch} must be a multiple of {per_image}")
    tmp = tempfile.TemporaryDirectory()
    records, vocab = real_data(Path(tmp.name), max((steps + 2) * batch // per_image, (steps + 2) * scst_images))
    torch.manual_seed(0)
    cfg = model_config(args.size)
    vocab_size = max(10201 if args.size == "paper" else 500, len(vocab))
    model = FSGRCaptioner(cfg, vocab_size=vocab_size).to(device).train()
    groups = model.parameter_groups()
    optimizer = torch.optim.Adam([{"params": v} for v in groups.values() if v], lr=1e-5, betas=(0.9, 0.98),
                                 fused=fused_adam_supported(device))
    amp_dtype = resolve_amp(args.amp, device) if not (device.type == "cpu" and args.amp != "off") else None
    res = cfg.clip.image_resolution
    length = 14                                                  # a typical COCO caption + <bos>/<eos>
    tokens = torch.randint(4, vocab_size, (batch, length), device=device)
    tokens[:, 0], tokens[:, -1] = 2, 3
    n_img = batch // per_image
    images_img = torch.randn(n_img, 3, res, res, device=device)
    # caption level: one image row per caption (each image repeated for its 5 captions, as the reference's loader)
    images_cap = images_img.repeat_interleave(per_image, dim=0)

    def xe(*inputs):
        xe_step(model, optimizer, *inputs, amp_dtype, device)

    # image level first: the caption-level run leaves the allocator with 5x larger activations behind
    t_img = timed(repeat(images_img, tokens, torch.arange(n_img, device=device).repeat_interleave(per_image)), xe,
                  steps, device)
    t_cap = timed(repeat(images_cap, tokens, torch.arange(batch, device=device)), xe, steps, device)

    with tmp:
        loader_s = {}
        for batching, per_step in (("image", batch // per_image), ("caption", batch)):
            ds = CaptionDataset(records, vocab, image_size=res, batching=batching)
            loader = make_loader(ds, per_step, shuffle=True, workers=args.workers, pin_memory=True, drop_last=True)
            loader_s[batching] = timed(from_loader(loader, device), xe, steps, device)

        # SCST: the reward uses the records' references; sampled ids map onto the real vocabulary's words
        reward = CiderDReward({r.image_id: list(r.captions) for r in records})
        itos = list(vocab.itos)

        def words(t: int) -> str:
            return itos[t] if t < len(itos) else f"w{t}"

        scst_s = {}
        for use_cache in (True, False):
            def scst(images, image_ids):
                scst_step(model, optimizer, reward, words, images, image_ids, use_cache, amp_dtype, device)

            ids = [r.image_id for r in records[:scst_images]]
            images = torch.randn(scst_images, 3, res, res, device=device)
            scst_s[use_cache] = timed(repeat(images, ids), scst, max(1, steps // 2), device)

    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    print(json.dumps({
        "bench": "train_step", "size": args.size, "device": name, "amp": str(amp_dtype or "fp32"),
        "threads": torch.get_num_threads(), "fused_adam": fused_adam_supported(device),
        "captions_per_step": batch, "steps": steps,
        "caption_level_captions_per_s": round(batch / t_cap, 2),
        "image_level_captions_per_s": round(batch / t_img, 2),
        "speedup_image_vs_caption": round(t_cap / t_img, 2),
        "loader_workers": args.workers, "loader_pin_memory": gpu,
        "caption_level_with_loader_captions_per_s": round(batch / loader_s["caption"], 2),
        "image_level_with_loader_captions_per_s": round(batch / loader_s["image"], 2),
        "image_level_with_loader_images_per_s": round(batch / per_image / loader_s["image"], 2),
        "speedup_image_vs_caption_with_loader": round(loader_s["caption"] / loader_s["image"], 2),
        "scst_images_per_step": scst_images, "scst_samples": 5, "scst_max_len": 20,
        "scst_cache_images_per_s": round(scst_images / scst_s[True], 2),
        "scst_no_cache_images_per_s": round(scst_images / scst_s[False], 2),
        "scst_speedup_cache": round(scst_s[False] / scst_s[True], 2),
    }))


if __name__ == "__main__":
    main()
