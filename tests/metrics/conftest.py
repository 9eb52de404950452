import shutil

import pytest
from ptb_cases import detokenize


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
