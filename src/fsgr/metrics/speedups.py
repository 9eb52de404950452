"""The metrics' compiled helpers (`_speedups.c`, built when the package is installed): the n-gram table, ROUGE-L's
LCS and the tokenizer's plain captions.

`compiled` is the extension module, or None where it was not built (no C compiler, a checkout never installed):
then each caller runs its numpy or Python version, which is the reference and gives the same values, more slowly.
`missing` says why it is not there. Tests switch it off by setting `compiled` to None.
"""

try:
    from fsgr.metrics import _speedups as compiled

    missing = ""
except ImportError as exc:
    compiled, missing = None, str(exc)
