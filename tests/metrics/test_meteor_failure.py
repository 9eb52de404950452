"""A METEOR process that dies says why (the Java exception, not a stack frame) and at which image."""

import sys

import pytest

from fsgr.metrics import meteor
from fsgr.metrics.java import MetricError, java_cause

# answers one SCORE line, then dies the way the JVM does when its heap runs out
FAKE_JAVA = r"""
import sys
sys.stdin.readline()
print("1 2 3", flush=True)
sys.stdin.readline()
sys.stderr.write('Exception in thread "main" java.lang.OutOfMemoryError: Java heap space\n'
                 '\tat edu.cmu.meteor.aligner.Aligner.align(Aligner.java:120)\n'
                 '\tat edu.cmu.meteor.scorer.MeteorScorer.getMeteorStats(MeteorScorer.java:210)\n')
sys.exit(1)
"""


def test_a_dead_meteor_names_the_java_cause_and_the_image(monkeypatch, tmp_path):
    script = tmp_path / "fake_java.py"
    script.write_text(FAKE_JAVA)
    monkeypatch.setattr(meteor, "meteor_command", lambda: ([sys.executable, str(script), "-", "-"], str(tmp_path)))
    refs = [["a dog"], ["a cat"], ["a bird"]]
    with pytest.raises(MetricError) as info:
        meteor.corpus_meteor(refs, ["a dog", "a cat", "a bird"], image_ids=[391895, 397133, 7], timeout=60)
    message = str(info.value)
    assert "java.lang.OutOfMemoryError: Java heap space" in message
    assert "image 397133 (2 of 3)" in message and "\n" not in message


def test_java_cause_prefers_the_exception_line():
    trace = "Exception in thread main java.lang.RuntimeException: x\n\tat a.b(C.java:1)\nCaused by: java.io.IOException: disk\n\tat d.e(F.java:2)\n"
    assert java_cause(trace) == "Caused by: java.io.IOException: disk"
    assert java_cause("plain failure\nlast words") == "last words"


HANGING_JAVA = r"""
import sys, time
sys.stdin.readline()
time.sleep(120)   # a JVM that stops answering
"""


def test_java_timeout_bounds_a_hung_meteor_and_tolerance_reports_it(monkeypatch, tmp_path):
    """`score_tokenized(java_timeout=)` kills a METEOR run that stops answering; with tolerate_failures the other
    metrics are kept and METEOR is unavailable with the reason, without tolerance it raises."""
    from fsgr.metrics.score import score_tokenized

    script = tmp_path / "hanging_java.py"
    script.write_text(HANGING_JAVA)
    monkeypatch.setattr(meteor, "meteor_command", lambda: ([sys.executable, str(script), "-", "-"], str(tmp_path)))
    refs = [["a dog runs"], ["a cat sits"]]
    scores = score_tokenized([1, 2], refs, ["a dog runs", "a cat"], ["bleu", "meteor", "cider"],
                             tolerate_failures=True, java_timeout=1.5)
    assert "METEOR" not in scores and {"BLEU-4", "CIDEr"} <= set(scores)
    assert scores.unavailable["METEOR"].startswith("failed: METEOR") and "timed out" in scores.unavailable["METEOR"]
    with pytest.raises(MetricError, match="timed out"):
        score_tokenized([1, 2], refs, ["a dog runs", "a cat"], ["meteor"], java_timeout=1.5)
