import gzip
import re
import shutil
from collections import OrderedDict

import pytest
from ptb_cases import detokenize


def _flickr(real_data):
    caps = OrderedDict()
    for line in gzip.decompress((real_data / "flickr8k_captions_2000.txt.gz").read_bytes()).decode("utf-8").splitlines():
        if not line.strip():
            continue
        m = re.match(r"^(\S+)#(\d+)\s+(.*)$", line)
        caps.setdefault(m.group(1), []).append(m.group(3))
    return caps


@pytest.fixture(scope="session")
def flickr(real_data):
    """Flickr8k (the first 2,000 images): image name -> its 5 real human captions (already PTB-tokenised)."""
    return _flickr(real_data)


@pytest.fixture(scope="session")
def java():
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: the comparison with the Java reference needs it")
    return shutil.which("java")


@pytest.fixture(scope="session")
def flickr_split(flickr):
    """1,000 images: first caption held out as the candidate, the other four are references (raw-looking)."""
    names = list(flickr)[:1000]
    refs = {n: [detokenize(c) for c in flickr[n][1:]] for n in names}
    preds = {n: detokenize(flickr[n][0]) for n in names}
    return refs, preds
