"""The decoding flags shared by `fsgr evaluate`, `fsgr caption` and `fsgr serve` (fsgr.models.decoding)."""

from __future__ import annotations


def add_decoding_arguments(parser) -> None:
    g = parser.add_argument_group("decoding (default: the checkpoint's eval.* settings)")
    g.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy; default eval.beam_size)")
    g.add_argument("--max-len", type=int, default=None, help="longest caption in tokens, <eos> included")
    g.add_argument("--min-len", type=int, default=None, help="words before the caption may end (0 = any)")
    g.add_argument("--length-penalty", type=float, default=None,
                   help="rank beams by log-prob / length**P (0 = plain sum; > 0 favours longer captions)")
    g.add_argument("--no-repeat-ngram", type=int, default=None, help="never repeat an n-gram of this size (0 = off)")


def decoding_overrides(args) -> dict:
    """The flags as DecodeSettings fields (None: keep the checkpoint's eval.* value)."""
    return {"beam_size": args.beam, "max_len": args.max_len, "min_len": args.min_len,
            "length_penalty": args.length_penalty, "no_repeat_ngram": args.no_repeat_ngram}
