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
