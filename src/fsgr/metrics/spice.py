"""SPICE 1.0 through the jar pycocoevalcap ships, as pycocoevalcap's Spice runs it, minus two things:
no download (SPICE needs Stanford CoreNLP 3.6.0 and its models in spice/lib; pycocoevalcap fetches them on first
use, fsgr reports SPICE unavailable instead) and no `-cache` (its FST/LMDB cache needs reflective access that
Java 17 refuses without --add-opens; the scores are the same without it). A watchdog kills a run past `timeout`.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from fsgr.metrics.java import MetricError, MetricUnavailable, java_version, tail, toolkit_dir

SPICE_JAR = "spice-1.0.jar"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
# Java 9+ module flags SPICE's dependencies (FST serialisation, Guava) need for reflective access.
ADD_OPENS = ["--add-opens", "java.base/java.lang=ALL-UNNAMED", "--add-opens", "java.base/java.util=ALL-UNNAMED",
             "--add-opens", "java.base/java.math=ALL-UNNAMED", "--add-opens", "java.base/java.net=ALL-UNNAMED",
             "--add-opens", "java.base/java.text=ALL-UNNAMED", "--add-opens", "java.base/java.util.concurrent=ALL-UNNAMED"]


def spice_command(in_file: str, out_file: str) -> tuple[list[str], str]:
    java, major = java_version()
    folder = toolkit_dir() / "spice"
    jar = folder / SPICE_JAR
    if not jar.is_file():
        raise MetricUnavailable(f"{jar} is missing from the pycocoevalcap install")
    missing = [name for name in CORENLP_JARS if not (folder / "lib" / name).is_file()]
    if missing:
        raise MetricUnavailable(
            f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(missing)}) in {folder / 'lib'}; pycocoevalcap downloads "
            "them on first use and fsgr never downloads: copy them there to enable SPICE")
    flags = ADD_OPENS if major >= 9 else []
    return [java, *flags, "-jar", "-Xmx8G", SPICE_JAR, in_file, "-out", out_file, "-subset", "-silent"], str(folder)


def corpus_spice(image_ids: list, refs: list[list[str]], cands: list[str],
                 timeout: float = 3600.0) -> tuple[float, list[float]]:
    """SPICE F-score of tokenised candidates (mean over images, as the toolkit averages them)."""
    with tempfile.TemporaryDirectory(prefix="fsgr-spice-") as tmp:
        in_file, out_file = str(Path(tmp) / "in.json"), str(Path(tmp) / "out.json")
        cmd, cwd = spice_command(in_file, out_file)
        data = [{"image_id": i, "test": c, "refs": rs} for i, c, rs in zip(image_ids, cands, refs, strict=True)]
        Path(in_file).write_text(json.dumps(data))
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MetricError(f"SPICE ({SPICE_JAR} in {cwd}) ran past {timeout:.0f} s and was killed") from None
        if proc.returncode != 0 or not Path(out_file).is_file():
            raise MetricError(f"SPICE ({SPICE_JAR} in {cwd}) failed with exit status {proc.returncode}; "
                              f"stderr: {tail(proc.stderr) or '(empty)'}")
        results = json.loads(Path(out_file).read_text())
    by_id = {str(item["image_id"]): item["scores"]["All"]["f"] for item in results}
    per_image = []
    for i in image_ids:
        value = by_id.get(str(i))
        try:
            per_image.append(float(value))
        except (TypeError, ValueError):
            per_image.append(math.nan)
    return float(np.mean(np.array(per_image))), per_image
