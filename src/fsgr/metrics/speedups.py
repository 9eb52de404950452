"""The metrics' compiled kernels (`_speedups`, built from one C file per kernel when the package is installed), each
beside the Python/numpy function it replaces, which is the reference and gives the same values, more slowly:

- `ngram_table` (`_ngram_table.c`): `fsgr.metrics.ngrams._numpy_table`, the n-gram table of one evaluation;
- `lcs_lengths` (`_lcs.c`): `fsgr.metrics.rouge._bit_parallel_lcs`, ROUGE-L's longest common subsequences;
- `fast_lines` (`_fast_lines.c`): `fsgr.metrics.tokenizer._fast_line`, the PTB tokenizer's fast path.

docs/metrics.md gives the benchmark line that justifies each. `compiled` is the extension module, or None where it
was not built (no C compiler, a checkout never installed; `missing` says why); each kernel is its function or None.
Tests and benchmarks switch one kernel off by setting it to None, all of them with `switch_off()`.
"""

import sys

try:
    from fsgr.metrics import _speedups as compiled

    missing = ""
except ImportError as exc:
    compiled, missing = None, str(exc)

KERNELS = ("ngram_table", "lcs_lengths", "fast_lines")
ngram_table = getattr(compiled, "corpus_table", None)
lcs_lengths = getattr(compiled, "lcs_lengths", None)
fast_lines = getattr(compiled, "fast_lines", None)


def switch_off(monkeypatch=None) -> None:
    """Every kernel off (through pytest's `monkeypatch` where given, so that the test restores them)."""
    module = sys.modules[__name__]
    for name in KERNELS:
        if monkeypatch is None:
            setattr(module, name, None)
        else:
            monkeypatch.setattr(module, name, None)
