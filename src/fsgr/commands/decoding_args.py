"""The decoding and precision flags shared by `fsgr evaluate`, `caption`, `serve` and `explain`
(fsgr.models.decoding.DecodeSettings checks every value; a refusal names the flag)."""

from __future__ import annotations

from fsgr.errors import ConfigError

# DecodeSettings field -> its flag as refusals name it (Hugging Face's spelling / fsgr's older one)
FLAGS = {"beam_size": "--num-beams/--beam", "max_len": "--max-new-tokens/--max-len",
         "min_len": "--min-new-tokens/--min-len", "length_penalty": "--length-penalty",
         "no_repeat_ngram": "--no-repeat-ngram-size/--no-repeat-ngram",
         "do_sample": "--do-sample", "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
         "num_return_sequences": "--num-return-sequences", "seed": "--seed"}
PRECISIONS = ("train", "fp32", "bf16", "fp16")     # fsgr.core.device.PRECISIONS (no torch import for --help)


def add_decoding_arguments(parser, sampling: bool = True) -> None:
    """The search flags, and with `sampling` the sampling ones (evaluate scores one caption per image: no sampling)."""
    g = parser.add_argument_group("decoding (Hugging Face generate()'s names; default: the checkpoint's eval.*)")
    g.add_argument("--num-beams", "--beam", dest="beam_size", type=int, metavar="K", default=None,
                   help="beam size (1 = greedy; default eval.beam_size)")
    g.add_argument("--max-new-tokens", "--max-len", dest="max_len", type=int, metavar="N", default=None,
                   help="longest caption in tokens, <eos> included")
    g.add_argument("--min-new-tokens", "--min-len", dest="min_len", type=int, metavar="N", default=None,
                   help="words before the caption may end (0 = any)")
    g.add_argument("--length-penalty", dest="length_penalty", type=float, metavar="P", default=None,
                   help="rank beams by log-prob / length**P, -10..10 (0 = plain sum, fsgr's default; HF's default "
                        "is 1; > 0 favours longer captions)")
    g.add_argument("--no-repeat-ngram-size", "--no-repeat-ngram", dest="no_repeat_ngram", type=int, metavar="N",
                   default=None, help="never repeat an n-gram of this size (0 = off)")
    if not sampling:
        return
    g.add_argument("--do-sample", dest="do_sample", action="store_true", default=None,
                   help="draw captions from the model instead of searching (beam 1 unless given)")
    g.add_argument("--temperature", type=float, metavar="T", default=None,
                   help="sampling: logits / T, 0.01..100 (1)")
    g.add_argument("--top-k", dest="top_k", type=int, metavar="K", default=None,
                   help="sampling: only the K most likely words (0 = all, HF's default is 50)")
    g.add_argument("--top-p", dest="top_p", type=float, metavar="P", default=None,
                   help="sampling: only the most likely words holding this probability (0..1]")
    g.add_argument("--num-return-sequences", dest="num_return_sequences", type=int, metavar="N", default=None,
                   help="captions per image: the best beams (at most --num-beams) or samples (at most 100)")
    g.add_argument("--seed", type=int, metavar="SEED", default=None,
                   help="sampling: the same seed gives an image the same captions (0..2**63-1)")


def add_precision_argument(parser) -> None:
    parser.add_argument("--precision", default="train", choices=PRECISIONS,
                        help="autocast dtype for decoding; train (default) = the checkpoint's train.amp on this "
                             "device, as the trainer's own evaluation (fp32 on the CPU for train.amp auto/off)")


def decoding_overrides(args) -> dict:
    """The flags given as DecodeSettings fields (None: keep the checkpoint's eval.* value)."""
    return {name: getattr(args, name) for name in FLAGS if getattr(args, name, None) is not None}


def decoding_settings(captioner, args):
    """captioner.settings() from the flags; a refused value names its flag."""
    from fsgr.models.decoding import DecodingValueError

    try:
        return captioner.settings(**decoding_overrides(args))
    except DecodingValueError as exc:
        raise flag_refusal(exc) from None


def flag_refusal(exc) -> ConfigError:
    """A DecodingValueError as the CLI says it: naming the flag, not the DecodeSettings field."""
    return ConfigError(f"{FLAGS[exc.field]} {exc.value}: {exc.reason}")
