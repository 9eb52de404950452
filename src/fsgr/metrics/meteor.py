"""METEOR 1.5 through the jar pycocoevalcap ships, driven exactly as pycocoevalcap's Meteor does.

`java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm` in the jar's folder; one `SCORE ||| refs ||| hyp` line per
image (hypothesis with '|||' removed and double spaces collapsed), then one `EVAL ||| stats ||| ...` line whose
answer is the per-image scores and the corpus score. Lines are written from a thread so large inputs cannot
deadlock the pipes; a watchdog kills a process that runs past `timeout` seconds.
"""

from __future__ import annotations

import subprocess
import threading

from fsgr.metrics.java import MetricError, MetricUnavailable, java_cause, java_version, toolkit_dir

METEOR_JAR = "meteor-1.5.jar"


def meteor_command() -> tuple[list[str], str]:
    java, _major = java_version()
    folder = toolkit_dir() / "meteor"
    jar = folder / METEOR_JAR
    if not jar.is_file():
        raise MetricUnavailable(f"{jar} is missing from the pycocoevalcap install")
    if not (folder / "data" / "paraphrase-en.gz").is_file():
        raise MetricUnavailable(f"{folder / 'data' / 'paraphrase-en.gz'} is missing (METEOR's paraphrase table)")
    return [java, "-jar", "-Xmx2G", METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"], str(folder)


def corpus_meteor(refs: list[list[str]], cands: list[str], timeout: float = 1800.0,
                  image_ids: list | None = None) -> tuple[float, list[float]]:
    """METEOR of tokenised candidates against tokenised references (pycocoevalcap's inputs). `image_ids` only name
    the image in a failure message."""
    cmd, cwd = meteor_command()
    if not cands:
        return 0.0, []
    score_lines = []
    for hyp, rs in zip(cands, refs, strict=True):
        hyp = hyp.replace("|||", "").replace("  ", " ")
        score_lines.append(" ||| ".join(("SCORE", " ||| ".join(rs), hyp)) + "\n")
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout, kill)
    watchdog.daemon = True
    watchdog.start()
    stderr_chunks: list[bytes] = []
    err_reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    err_reader.start()

    def fail(what: str) -> MetricError:
        proc.kill()
        proc.wait()
        err_reader.join(timeout=5)
        why = "timed out" if timed_out.is_set() else f"exit status {proc.returncode}"
        where = ""
        if len(stats) < len(score_lines):     # the line it was answering when it stopped
            image = image_ids[len(stats)] if image_ids is not None else f"#{len(stats)}"
            where = f" at image {image} ({len(stats) + 1} of {len(score_lines)})"
        return MetricError(f"METEOR ({' '.join(cmd[1:4])} in {cwd}) {what}{where}: {why}; "
                           f"cause: {java_cause(b''.join(stderr_chunks)) or '(empty stderr)'}")

    def write_all():
        try:
            for line in score_lines:
                proc.stdin.write(line.encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader sees the closed stdout and reports the process's own error

    stats: list[str] = []
    try:
        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        for _ in score_lines:
            line = proc.stdout.readline()
            if not line:
                raise fail("stopped while scoring")
            stats.append(line.decode().strip())
        writer.join()
        proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        proc.stdin.flush()
        per_image = []
        for _ in range(len(stats) + 1):
            line = proc.stdout.readline()
            if not line:
                raise fail("stopped while evaluating")
            try:
                per_image.append(float(line.strip()))
            except ValueError:
                raise fail(f"answered {line[:80]!r} instead of a score") from None
        proc.stdin.close()
        proc.wait(timeout=60)
    except (BrokenPipeError, OSError, subprocess.TimeoutExpired) as exc:
        raise fail(f"pipe error {type(exc).__name__}") from None
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return per_image[-1], per_image[:-1]
