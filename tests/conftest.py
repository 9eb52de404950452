import gzip
import os
import re
import tempfile
from collections import OrderedDict
from pathlib import Path

import pytest

# Two pytest workers share two cores: keep each test process to one intra-op thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The caption cache (data.cache_dir: auto) of every run the tests start, subprocesses included, stays out of ~/.cache.
os.environ.setdefault("FSGR_CACHE_DIR", tempfile.mkdtemp(prefix="fsgr-test-cache-"))
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the metrics tests run without torch
    pass

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO / "tests" / "real_data"


@pytest.fixture(scope="session")
def training_helpers():
    """tests/training/conftest.py as a module (make_dataset, tiny_config, write_config), for tests outside it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("training_conftest", REPO / "tests" / "training" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Small real data shipped with the tests (tests/real_data, sources and licences in its README.md): Flickr8k
    captions of 2,000 images, two COCO photos, M2's vocab.pkl."""
    return REAL_DATA


@pytest.fixture(scope="session")
def flickr(real_data):
    """Flickr8k (the first 2,000 images): image name -> its 5 real human captions (already PTB-tokenised)."""
    caps = OrderedDict()
    for line in gzip.decompress((real_data / "flickr8k_captions_2000.txt.gz").read_bytes()).decode("utf-8").splitlines():
        if not line.strip():
            continue
        m = re.match(r"^(\S+)#(\d+)\s+(.*)$", line)
        caps.setdefault(m.group(1), []).append(m.group(3))
    return caps


class _OpensOnUnpickling:
    """Unpickling this calls open(target, 'w'): a stand-in for any code a hostile .pt would run."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture(scope="session")
def write_hostile_checkpoint():
    """(path, target) -> writes a checkpoint-shaped .pt at `path` whose unpickling would create `target`."""
    def write(path, target):
        import torch

        torch.save({"format_version": 1, "config": {}, "vocab_itos": [], "model": {}, "x": _OpensOnUnpickling(target)},
                   path)
    return write


# a METEOR process that answers one SCORE line, then dies as a JVM out of heap does
CRASHING_METEOR = r"""
import sys
sys.stdin.readline()
print("1 2 3", flush=True)
sys.stdin.readline()
sys.stderr.write('Exception in thread "main" java.lang.OutOfMemoryError: Java heap space\n')
sys.exit(1)
"""


@pytest.fixture
def crashing_meteor(monkeypatch, tmp_path):
    """METEOR runs a process that crashes after its first image (the other metrics are unaffected)."""
    import sys

    from fsgr.metrics import meteor

    script = tmp_path / "crashing_meteor.py"
    script.write_text(CRASHING_METEOR)
    monkeypatch.setattr(meteor, "meteor_command", lambda: ([sys.executable, str(script), "-", "-"], str(tmp_path)))
