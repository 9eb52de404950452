import os
from pathlib import Path

import pytest

# Two pytest workers share two cores: keep each test process to one intra-op thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the metrics tests run without torch
    pass

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real data shipped beside the project (../shared/data): Flickr8k captions, COCO photos, M2 vocab.pkl."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need the shared real data beside the project root")
    return SHARED_DATA
