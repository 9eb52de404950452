"""The `fsgr` command line: one entry point, one module per verb under `fsgr.commands`.

Each verb module defines `add_arguments(parser)` and `main(args) -> int`. A command line naming a verb imports that
verb's module alone (`fsgr --help` imports them all; none imports torch at import time), and heavy dependencies load
inside `main`, so `fsgr score` never pays for torch. Errors are one line and a non-zero exit; `--debug` shows the
traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

from fsgr.errors import FsgrError

# verb -> (module under fsgr.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "train and score FSGR end to end on the embedded synthetic dataset (CPU, minutes)"),
    "train": ("train", "train from a YAML config with key=value overrides (XE, then SCST); --resume continues"),
    "evaluate": ("evaluate", "decode a split with a checkpoint and print/write the COCO scores"),
    "caption": ("caption", "caption images with a checkpoint: one 'path<TAB>caption' line each"),
    "serve": ("serve", "serve a web page and JSON API that caption uploaded images (pip install fsgr[serve])"),
    "export": ("export", "export a checkpoint as ONNX graphs (onnxruntime) or a Hub-style safetensors folder"),
    "explain": ("explain", "draw the patch-to-concept map and caption of one image as a PNG"),
    "score": ("score", "score COCO-format predictions against references (BLEU, METEOR, ROUGE-L, CIDEr, SPICE)"),
    "compare": ("compare", "compare systems on the same images: scores, paired-bootstrap CIs and p-values, diagnostics"),
    "check-data": ("check_data", "validate annotations, images and vocabulary before training"),
    "build-vocab": ("build_vocab", "build a vocabulary JSON from training captions, or import an M2 vocab.pkl"),
    "codebook": ("codebook", "embed a class list with a CLIP text tower into a semantic codebook file"),
    "summary": ("summary", "parameter counts (total/trainable/frozen, per module) of a config's model, as JSON"),
    "ablate": ("ablate", "train config variants for N seeds each and tabulate them with paired-bootstrap CIs"),
    "check-semantics": ("check_semantics", "measure zero-shot patch labels of a config's CLIP and codebook against "
                                           "ground-truth masks, per labelling path"),
    "pretrain-clip": ("pretrain_clip", "pretrain the tiny demo CLIP on synthetic shapes (contrastive image-text)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of verb `only` alone (what a command line naming it needs: the other verbs'
    modules are then not imported)."""
    epilog = None
    if only is None:   # the full help lists the packaged configs; a command line naming a verb skips the lookup
        from fsgr.packaged import packaged_configs   # (importlib.resources: ~10 ms of every verb's start-up)

        epilog = f"packaged configs (fsgr train NAME): {', '.join(packaged_configs())}"
    parser = argparse.ArgumentParser(prog="fsgr", description=__doc__.splitlines()[0], epilog=epilog)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    _add_verbosity(parser, argparse.SUPPRESS)
    parser.add_argument("--version", action=_PrintVersion, help="print the versions of fsgr, torch and CUDA, and "
                                                                "whether the C extension is built, then exit")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        if only is not None and verb != only:
            continue
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        _add_verbosity(p, argparse.SUPPRESS)
        p.set_defaults(_module=module_name)
        _verb_module(module_name).add_arguments(p)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", "-q", action="store_true", default=default,
                       help="messages: warnings and errors only (results still print)")
    group.add_argument("--verbose", "-v", action="store_true", default=default, help="messages: debug ones too")


class _PrintVersion(argparse.Action):
    """`fsgr --version`: torch is imported only when asked (building the parser must stay cheap)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text() -> str:
    import platform

    import torch

    from fsgr import __version__
    from fsgr.metrics import speedups

    cuda = (f"CUDA {torch.version.cuda} ({torch.cuda.device_count()} GPU(s) visible)" if torch.version.cuda
            else "CUDA none")
    extension = "built" if speedups.compiled is not None else f"not built ({speedups.missing})"
    return (f"fsgr {__version__}\ntorch {torch.__version__}, {cuda}\nPython {platform.python_version()}\n"
            f"C extension: {extension}")


# Short-lived verbs that make no reference cycles worth collecting and end as soon as their output is out: they run
# without the cyclic garbage collector (its passes over a scored corpus's objects: ~15-30 ms of a ~0.4 s `fsgr
# score`) and leave the interpreter's clean-up nothing to do (their files are written and fsynced, no child process
# or writer is left open; freeing the corpus object by object is another ~25 ms). mypy runs the same way.
FAST_EXIT_VERBS = frozenset({"score", "compare"})

# Verbs that do no linear algebra: numpy's OpenBLAS would start a worker thread that busy-waits on another core for
# work that never comes (~0.13 s of CPU beside a ~0.3 s `fsgr score`; `compare`'s bootstrap is a matrix product, so
# it keeps the default). One thread unless the user set a number; it must be set before numpy is imported.
SERIAL_BLAS_VERBS = frozenset({"score"})


def run() -> None:
    """The `fsgr` console script and `python -m fsgr`: `main()`, then the exit; the verbs in FAST_EXIT_VERBS run
    without the garbage collector and exit without the interpreter's teardown (stdout and stderr flushed first), those
    in SERIAL_BLAS_VERBS with one OpenBLAS thread; a torchrun rank leaves as `_leave_torchrun_rank` says. Tests call
    `main()`, which returns."""
    argv = sys.argv[1:]
    verb = _verb_of(argv)
    if verb in SERIAL_BLAS_VERBS:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    fast = verb in FAST_EXIT_VERBS
    if fast:
        gc.disable()
    rc = main(argv)
    if fast:
        _exit_now(rc)
    if _is_torchrun_rank():
        _leave_torchrun_rank(rc)
    sys.exit(rc)


def _is_torchrun_rank() -> bool:
    """One of several processes torchrun started: the condition on which `init_distributed` makes a process group."""
    world = os.environ.get("WORLD_SIZE", "1").strip()
    return world.isdigit() and int(world) > 1


def _leave_torchrun_rank(rc: int) -> None:
    """Exit a torchrun rank without the interpreter's teardown, as multiprocessing's children do. Gloo's C++ worker
    threads outlive `destroy_process_group()` while anything (DDP's reducer, a Work) still holds the group, and one that
    frees a finished collective's tensor during the teardown takes the GIL of a finalizing interpreter: CPython ends
    that thread with pthread_exit, whose unwinding through C++ aborts the rank (SIGABRT, "terminate called without an
    active exception"; pytorch/pytorch#190489) after its work was done and saved. Everything a normal exit does before
    the teardown still happens here, while the interpreter is alive: other non-daemon threads are waited for, the
    atexit callbacks run (logging's flush, trackers'), stdout and stderr are flushed."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    _exit_now(rc)


def _exit_now(rc: int) -> None:
    """stdout and stderr flushed, then the process ends at once (no interpreter teardown, no atexit callbacks)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (`fsgr score ... | head`): as main() has it, not an error
        rc = 0
    os._exit(rc)


def _verb_of(argv: list[str]) -> str | None:
    """The verb a command line names: its first word that is not a flag."""
    return next((word for word in argv if not word.startswith("-")), None)


def _verb_module(name: str):
    return importlib.import_module(f"fsgr.commands.{name}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        verb = _verb_of(argv)
        parser = build_parser(verb if verb in VERBS else None)
        args, extra = parser.parse_known_args(argv)
        # argparse ends a `CONFIG [key=value ...]` positional at the first flag, so `fsgr train CONFIG --resume
        # train.max_steps=80` would leave the override unrecognised: key=value words after flags are overrides too
        if extra and isinstance(getattr(args, "overrides", None), list) and \
                all("=" in word and not word.startswith("-") for word in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.verb is None:
            parser.print_help()
            return 2
        if os.environ.get("FSGR_MAX_IMAGE_PIXELS", "").strip():   # a bad limit is refused here, not by every image
            from fsgr.data.decode import max_image_pixels

            max_image_pixels()
        quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
        if not (quiet or verbose):
            return int(_verb_module(args._module).main(args) or 0)
        from fsgr.logs import verbosity   # (`logging` loads only here: `fsgr score` does not pay for it)

        with verbosity(quiet=quiet, verbose=verbose):
            return int(_verb_module(args._module).main(args) or 0)
    except KeyboardInterrupt:
        print("fsgr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`fsgr summary ... | head`): not an error of ours; silence the flush at exit too

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except FsgrError as exc:
        if debug:
            raise
        print(f"fsgr: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code    # 2 refused before any work, 1 failed after some (WorkFailed), 3 could not bind
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError) as exc:
        if debug:   # a path that is not what it must be: the user's to fix, like a usage error
            raise
        print(f"fsgr: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if debug:   # the system failed the work (full disk, I/O error, ...): one line naming the file, not a traceback
            raise
        print(f"fsgr: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line instead of a traceback
        if debug:
            raise
        print(f"fsgr: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
