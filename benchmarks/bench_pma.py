"""Cost of the prototypical memory (model.pma): training-step overhead (time, peak memory) and K-Means refresh time.

Training step = forward + NLL + backward + Adam step (+ for PMA: the bank sample in the forward and the commit after
the step), measured against the same model without memory, in the same process, alternating the two. The memory's
prototypes are all valid (random), so the attention really runs over M extra keys. Two models:
  decoder    the caption decoder alone at paper size (3 layers, d 512, V 10,201), 50 captions of 10-16 tokens
             cross-attending a (50, 196, 512) encoder output: the strictest ratio (nothing else to hide behind)
  captioner  the whole FSGR captioner at paper size (CLIP ViT-B/16 random weights, 100 deep prompts, 4,585-concept
             codebook), 10 images x 5 captions: what a real training step costs (GPU only by default)
Refresh = K-Means (M prototypes per head, batched over heads) + kNN value prototypes over full banks of
T x tokens_per_step rows per head in every layer, amortised over R steps. Prints ONE JSON line.

    python benchmarks/bench_pma.py --device cuda                      # paper size: M=1024, T=1500, cap 64, R=100
    python benchmarks/bench_pma.py --device cpu --bank-iterations 150 --kmeans-iterations 5   # a CPU-sized look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
import torch.nn.functional as F

from fsgr.models.config import DecoderConfig, PMAConfig
from fsgr.models.decoder import Decoder, xavier_init_
from fsgr.models.memory import bank_bytes
from fsgr.training.memory_hook import MemoryHook

PAD, BOS, EOS = 1, 2, 3
VOCAB = 10201


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _captions(n, vocab, device, gen):
    lengths = torch.randint(10, 17, (n,), generator=gen)
    tokens = torch.full((n, int(lengths.max())), PAD, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        tokens[i, :length] = torch.randint(4, vocab, (length,), generator=gen)
        tokens[i, 0], tokens[i, length - 1] = BOS, EOS
    return tokens.to(device)


def _fill_prototypes(decoder, gen):
    for mem in decoder.memory_layers():
        mem.proto_k.copy_(torch.randn(mem.proto_k.shape, generator=gen))
        mem.proto_v.copy_(torch.randn(mem.proto_v.shape, generator=gen))
        mem.proto_valid.fill_(True)


def _step_fn(model, forward, optimizer, amp_dtype, device, with_memory):
    """One training step. With memory: the bank sample happens in the forward and the commit after the optimiser
    step, as the trainer's MemoryHook does on a non-refresh step (the refresh is timed separately and amortised)."""
    decoder = model.decoder if hasattr(model, "decoder") and isinstance(model.decoder, Decoder) else model

    def step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logprobs, tokens = forward()
        loss = F.nll_loss(logprobs[:, :-1].reshape(-1, logprobs.shape[-1]), tokens[:, 1:].reshape(-1),
                          ignore_index=PAD)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if with_memory:
            for mem in decoder.memory_layers():
                mem.commit()
    return step


def _time_pair(steps, device, repeats, iters):
    """Alternate the two models' steps; best-of-repeats mean step time (s) and peak memory (bytes, cuda) each."""
    for fn in steps:
        for _ in range(2):
            fn()                                        # warm-up
    _sync(device)
    best = [float("inf")] * len(steps)
    peak = [0] * len(steps)
    for _ in range(repeats):
        for i, fn in enumerate(steps):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            _sync(device)
            best[i] = min(best[i], (time.perf_counter() - t0) / iters)
            if device.type == "cuda":
                peak[i] = max(peak[i], torch.cuda.max_memory_allocated(device))
    return best, peak


def bench_decoder(args, pma, device, amp_dtype):
    gen = torch.Generator().manual_seed(0)
    cfg = DecoderConfig(layers=args.layers)
    models = []
    for mem_cfg in (None, pma):
        torch.manual_seed(0)
        dec = Decoder(cfg, VOCAB, PAD, dropout=0.1, double_residual=True, pma=mem_cfg)
        xavier_init_(dec)
        if mem_cfg is not None:
            _fill_prototypes(dec, gen)
        models.append(dec.to(device).train())
    tokens = _captions(args.captions, VOCAB, device, gen)
    memory = torch.randn(args.captions, 196, 512, generator=gen).to(device)
    pos = torch.randn(1, 196, 512, generator=gen).to(device)
    steps = []
    for dec in models:
        opt = torch.optim.Adam(dec.parameters(), lr=1e-5)
        steps.append(_step_fn(dec, lambda d=dec: (d(tokens, memory, pos), tokens), opt, amp_dtype, device,
                              dec.pma is not None))
    return _time_pair(steps, device, args.repeats, args.iters), models[1]


def bench_captioner(args, pma, device, amp_dtype):
    from fsgr.models.captioner import FSGRCaptioner
    from fsgr.models.config import ModelConfig

    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.captions // 5, 3, 224, 224, generator=gen).to(device)
    tokens = _captions(args.captions, VOCAB, device, gen)
    index = torch.arange(args.captions // 5).repeat_interleave(5).to(device)
    steps, models = [], []
    for mem_cfg in (PMAConfig(), pma):
        torch.manual_seed(0)
        model = FSGRCaptioner(dataclasses.replace(ModelConfig(), pma=mem_cfg,
                                                  decoder=DecoderConfig(layers=args.layers)), VOCAB)
        if mem_cfg.enabled:
            _fill_prototypes(model.decoder, gen)
        model = model.to(device).train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        steps.append(_step_fn(model, lambda m=model: (m(images, tokens, index).logprobs, tokens), opt, amp_dtype,
                              device, mem_cfg.enabled))
        models.append(model)
    result = _time_pair(steps, device, args.repeats, args.iters)
    del models, steps
    return result


def bench_refresh(pma_decoder, pma, device, repeats):
    """Full banks (T x cap rows per head, every layer), then the refresh of all layers; best of `repeats`."""
    gen = torch.Generator(device=device).manual_seed(2)
    layers = pma_decoder.memory_layers()
    for mem in layers:
        mem.bank_k.copy_(torch.randn(mem.bank_k.shape, generator=gen, device=device))
        mem.bank_v.copy_(torch.randn(mem.bank_v.shape, generator=gen, device=device))
        mem.bank_valid.fill_(True)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        MemoryHook(layers, pma).refresh(pma.refresh_every)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, int(sum(int(m.proto_valid.sum()) for m in layers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", choices=["decoder", "captioner", "both"], default=None,
                    help="default: both on cuda, decoder on cpu")
    ap.add_argument("--captions", type=int, default=50, help="captions per step (5 per image)")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--num-prototypes", type=int, default=1024)
    ap.add_argument("--bank-iterations", type=int, default=1500)
    ap.add_argument("--tokens-per-step", type=int, default=64)
    ap.add_argument("--refresh-every", type=int, default=PMAConfig.refresh_every)
    ap.add_argument("--kmeans-iterations", type=int, default=25)
    ap.add_argument("--bank-dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--amp", choices=["auto", "off"], default="auto", help="auto: bf16 autocast on cuda")
    ap.add_argument("--iters", type=int, default=10, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp_dtype = torch.bfloat16 if (args.amp == "auto" and device.type == "cuda") else None
    which = args.model or ("both" if device.type == "cuda" else "decoder")
    pma = PMAConfig(enabled=True, num_prototypes=args.num_prototypes, bank_iterations=args.bank_iterations,
                    tokens_per_step=args.tokens_per_step, refresh_every=args.refresh_every,
                    kmeans_iterations=args.kmeans_iterations, bank_dtype=args.bank_dtype)

    out = {"bench": "pma", "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32", "captions_per_step": args.captions,
           "layers": args.layers, "M": pma.num_prototypes, "T": pma.bank_iterations,
           "tokens_per_step": pma.tokens_per_step, "R": pma.refresh_every, "kmeans_iterations": pma.kmeans_iterations,
           "bank_rows_per_head": pma.bank_iterations * pma.tokens_per_step,
           "bank_mb": round(bank_bytes(pma, 512, args.layers) / 2 ** 20, 1)}
    (times, peaks), pma_decoder = bench_decoder(args, pma, device, amp_dtype)
    out["decoder_step_ms"] = {"baseline": round(times[0] * 1e3, 3), "pma": round(times[1] * 1e3, 3)}
    out["decoder_step_overhead"] = round(times[1] / times[0] - 1, 4)
    if device.type == "cuda":
        out["decoder_peak_mb"] = {"baseline": round(peaks[0] / 2 ** 20, 1), "pma": round(peaks[1] / 2 ** 20, 1)}
    refresh_s, valid = bench_refresh(pma_decoder, pma, device, repeats=2 if device.type == "cuda" else 1)
    out["refresh_s"] = round(refresh_s, 4)
    out["refresh_valid_prototypes"] = valid
    out["refresh_amortised_ms_per_step"] = round(refresh_s / pma.refresh_every * 1e3, 3)
    out["decoder_step_overhead_with_refresh"] = round(
        (times[1] + refresh_s / pma.refresh_every) / times[0] - 1, 4)
    del pma_decoder
    if which in ("captioner", "both"):
        if device.type == "cuda":
            torch.cuda.empty_cache()
        times, peaks = bench_captioner(args, pma, device, amp_dtype)
        out["captioner_step_ms"] = {"baseline": round(times[0] * 1e3, 3), "pma": round(times[1] * 1e3, 3)}
        out["captioner_step_overhead"] = round(times[1] / times[0] - 1, 4)
        out["captioner_step_overhead_with_refresh"] = round(
            (times[1] + refresh_s / pma.refresh_every) / times[0] - 1, 4)
        if device.type == "cuda":
            out["captioner_peak_mb"] = {"baseline": round(peaks[0] / 2 ** 20, 1),
                                        "pma": round(peaks[1] / 2 ** 20, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
