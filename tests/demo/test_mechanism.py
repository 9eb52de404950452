"""The demo report's mechanism metrics on a small long-tail world: captions that name exactly what each image holds
score recall 1 and no hallucination; dropping the tail concepts' names drops exactly the tail recall."""

import pytest

from fsgr.data import synthetic as syn
from fsgr.data.config import SyntheticConfig
from fsgr.demo.mechanism import image_concepts, mechanism_report


def test_mechanism_report_per_subset(tmp_path):
    cfg = SyntheticConfig(root=str(tmp_path / "lt"), world="longtail", num_train=40, num_val=3, num_test=12)
    root = syn.generate(cfg)
    truth, subsets, longtail = image_concepts(root)
    assert longtail and sorted(set(subsets.values())) == ["iid", "novel", "tail"]
    refs = {i: ["a shape", "some shapes"] for i in subsets}
    perfect = {i: " and ".join(sorted(truth[i])) for i in subsets}
    report = mechanism_report(root, perfect, refs)
    assert set(report) == {"all", "iid", "tail", "novel"} and report["all"]["images"] == 12
    assert report["all"]["hallucination"]["chair_i"] == 0 and report["all"]["binding_swaps"]["swaps"] == 0
    assert report["novel"]["recall"]["novel"] == 1.0 and report["iid"]["recall"]["novel"] is None
    tails = {n for v in syn.longtail_concepts()["tail"].values() for n in v}
    blind = {i: " and ".join(sorted(truth[i] - tails)) for i in subsets}
    report = mechanism_report(root, blind, refs)
    # 4 tail images cycle through the k=1 and k=3 concepts; the k=10 ones are in none of them
    assert [report["tail"]["recall"][f"tail_k{k}"] for k in syn.TAIL_K] == [0.0, 0.0, None]
    assert report["tail"]["recall"]["head"] == pytest.approx(1.0)
