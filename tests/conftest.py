import os
import tempfile
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
def real_data() -> Path:
    """Small real data shipped with the tests (tests/real_data, sources and licences in its README.md): Flickr8k
    captions of 2,000 images, two COCO photos, M2's vocab.pkl."""
    return REAL_DATA
