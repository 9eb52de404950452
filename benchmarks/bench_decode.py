"""Decoding speed at paper size (decoder side): greedy and beam search, with and without the key/value cache.

Random encoder memory (B, 196, 512), V = 10,201, 3 decoder layers (REF init). The no-cache path re-runs the decoder
over the whole prefix at every step: it is the in-process baseline. Also reports the per-step cost as the prefix
grows. Prints ONE JSON line. Target: beam 5 with the cache >= 3x faster than without at length 20, same captions.

    python benchmarks/bench_decode.py [--device cuda] [--images 8] [--beam 5] [--max-len 20]
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

import torch

from fsgr.models.config import DecoderConfig
from fsgr.models.decoder import Decoder, xavier_init_
from fsgr.models.decoding import beam_search, greedy

PAD, BOS, EOS = 1, 2, 3


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    fn()                                   # warm-up (allocator, kernels)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--vocab", type=int, default=10201)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    decoder = Decoder(DecoderConfig(layers=args.layers), args.vocab, PAD, dropout=0.1, double_residual=True)
    xavier_init_(decoder)
    with torch.no_grad():   # keep <eos> out of reach so every caption runs the full length being measured
        decoder.out.weight[EOS].zero_()
    decoder = decoder.to(device).eval()
    model = SimpleNamespace(decoder=decoder, bos_id=BOS, eos_id=EOS, pad_id=PAD)
    enc = SimpleNamespace(memory=torch.randn(args.images, 196, 512, device=device),
                          memory_pos=torch.randn(1, 196, 512, device=device))
    n, r = args.images, args.repeats

    t_gc, g_cache = timed(lambda: greedy(model, enc, args.max_len), device, r)
    t_gn, g_full = timed(lambda: greedy(model, enc, args.max_len, use_cache=False), device, r)
    t_bc, b_cache = timed(lambda: beam_search(model, enc, args.beam, args.max_len), device, r)
    t_bn, b_full = timed(lambda: beam_search(model, enc, args.beam, args.max_len, use_cache=False), device, r)

    # per-step cost at prefix length t: one cached step vs one full-prefix pass, over images x beams rows
    rows = n * args.beam
    memory = enc.memory.repeat_interleave(args.beam, 0)
    per_step = {}
    with torch.inference_mode():
        cache = decoder.init_cache(memory, enc.memory_pos)
        tokens = torch.randint(4, args.vocab, (rows, args.max_len), device=device)
        tokens[:, 0] = BOS
        marks = sorted({1, 5, 10, args.max_len})
        for t in range(1, args.max_len + 1):
            if t in marks:
                step_s, _ = timed(lambda: decoder.step(tokens[:, t - 1], cache), device, r)
                full_s, _ = timed(lambda: decoder(tokens[:, :t], memory, enc.memory_pos), device, r)
                per_step[str(t)] = {"cached_ms": round(step_s * 1e3, 3), "full_prefix_ms": round(full_s * 1e3, 3)}
            _, cache = decoder.step(tokens[:, t - 1], cache)

    print(json.dumps({
        "bench": "decode", "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "images": n, "beam": args.beam, "max_len": args.max_len, "vocab": args.vocab, "layers": args.layers,
        "greedy_cache_captions_per_s": round(n / t_gc, 2), "greedy_nocache_captions_per_s": round(n / t_gn, 2),
        "greedy_cache_speedup": round(t_gn / t_gc, 2),
        "beam_cache_captions_per_s": round(n / t_bc, 2), "beam_nocache_captions_per_s": round(n / t_bn, 2),
        "beam_cache_speedup": round(t_bn / t_bc, 2),
        "same_captions_greedy": bool(torch.equal(g_cache, g_full)),
        "same_captions_beam": bool(torch.equal(b_cache.tokens, b_full.tokens)),
        "generated_len": int((b_cache.tokens != PAD).sum(1).max()),
        "per_step": per_step,
    }))


if __name__ == "__main__":
    main()
