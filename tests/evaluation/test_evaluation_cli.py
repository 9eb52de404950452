"""`fsgr score` / `fsgr compare` as a user meets them: exit status 2 only for input refused before any scoring, 1 for
work that failed after it began (a full disk under --json once the table is printed, a METEOR that crashes while
BLEU & co. are kept), and the refusals of issue 25 (items 13, 14, 16) each as one line naming what is wrong."""

import json
import os

import pytest

from fsgr.cli import main
from fsgr.evaluation import coco_files


def write(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path):
    refs = {"annotations": [{"image_id": 1, "caption": "a red square on a table"},
                            {"image_id": 1, "caption": "a red box"},
                            {"image_id": 2, "caption": "a blue circle in the sky"},
                            {"image_id": 3, "caption": "two green triangles"}]}
    a = [{"image_id": 1, "caption": "a red square"}, {"image_id": 2, "caption": "a circle"},
         {"image_id": 3, "caption": "green triangles"}]
    b = [{"image_id": 1, "caption": "a red box"}, {"image_id": 2, "caption": "a blue circle"},
         {"image_id": 3, "caption": "two triangles"}]
    return tmp_path, write(tmp_path / "refs.json", refs), write(tmp_path / "a.json", a), write(tmp_path / "b.json", b)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err, err
    return rc, out, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full (a device whose writes fail as a full disk's)")
def test_score_json_on_a_full_disk_exits_1_after_the_table(files, capsys):
    _, refs, a, _ = files
    rc, out, err = run(capsys, "score", "--refs", refs, "--preds", a, "--metrics", "bleu,cider", "--json", "/dev/full")
    assert rc == 1
    assert "CIDEr" in out and "signature: fsgr:" in out          # the work was done and shown
    assert err.count("\n") == 1 and "/dev/full: no space left on device" in err


def test_score_json_to_a_device_writes_it_in_place(files, capsys):
    """/dev/null stays the device it is (a temporary file renamed over it would replace it)."""
    import stat
    from pathlib import Path

    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    _, refs, a, _ = files
    rc, _, _ = run(capsys, "score", "--refs", refs, "--preds", a, "--metrics", "bleu", "--json", "/dev/null")
    assert rc == 0 and stat.S_ISCHR(Path("/dev/null").stat().st_mode)


@pytest.mark.parametrize("verb", ["score", "compare"])
def test_a_crashing_meteor_exits_1_and_keeps_the_other_metrics(files, capsys, crashing_meteor, verb):
    tmp, refs, a, b = files
    preds = [a] if verb == "score" else [a, b]
    rc, out, err = run(capsys, verb, "--refs", refs, "--preds", *preds, "--metrics", "bleu,meteor,cider",
                       "--json", str(tmp / "out.json"))
    assert rc == 1
    assert "METEOR" in err and "failed" in err and "OutOfMemoryError" in err
    written = json.loads((tmp / "out.json").read_text())
    scores = written if verb == "score" else written["systems"]["a"]
    assert "METEOR" not in scores and {"BLEU-4", "CIDEr"} <= set(scores)
    rc, out, err = run(capsys, verb, "--refs", refs, "--preds", *preds, "--metrics", "bleu,cider")
    assert rc == 0


def test_a_crash_fails_the_run_where_a_missing_metric_does_not():
    from fsgr.evaluation.scoring import failed

    assert failed({"METEOR": "failed: METEOR: java.lang.OutOfMemoryError"})
    assert not failed({"SPICE": "the CoreNLP jars are missing"})        # reported; exit 1 only when asked for by name


def test_unknown_metrics_list_every_choice(files, capsys):
    _, refs, a, _ = files
    rc, _, err = run(capsys, "score", "--refs", refs, "--preds", a, "--metrics", "bleu,bogus")
    assert rc == 2 and err.count("\n") == 1
    for name in ("bogus", "bleu", "meteor", "rouge", "cider", "spice", "clipscore", "refclipscore", "chair"):
        assert name in err


def test_compare_refuses_the_same_file_twice(files, capsys):
    tmp, refs, a, _ = files
    for twin in (a, str(tmp / "." / "a.json")):
        rc, out, err = run(capsys, "compare", "--refs", refs, "--preds", a, twin, "--bootstrap", "10")
        assert rc == 2 and out == "" and "same file" in err and "a.json" in err


def test_compare_bootstrap_and_seed_are_bounded_before_any_work(files, capsys):
    tmp, refs, a, b = files
    rc, out, err = run(capsys, "compare", "--refs", refs, "--preds", a, b, "--bootstrap", "10000000",
                       "--json", str(tmp / "c.json"))
    assert rc == 2 and out == "" and "--bootstrap 10000000" in err and "10,000" in err
    rc, out, err = run(capsys, "compare", "--refs", refs, "--preds", a, b, "--seed", "-1")
    assert rc == 2 and out == "" and "--seed -1" in err
    assert not (tmp / "c.json").exists()
    rc, out, _ = run(capsys, "compare", "--refs", refs, "--preds", a, b, "--bootstrap", "10000", "--metrics", "bleu")
    assert rc == 0 and "3 images" in out


def test_nocaps_image_in_two_domains_is_refused_by_name(files, capsys):
    tmp, _, a, _ = files
    nocaps = {"images": [{"id": 1, "domain": "in-domain"}, {"id": 2, "domain": "near-domain"},
                         {"id": 3, "domain": "out-domain"}, {"id": 2, "domain": "out-domain"}],
              "annotations": [{"image_id": i, "caption": "a shape"} for i in (1, 2, 3)]}
    refs = write(tmp / "nocaps.json", nocaps)
    rc, out, err = run(capsys, "score", "--refs", refs, "--preds", a)
    assert rc == 2 and out == "" and "two domains" in err and "nocaps.json" in err and ": 2" in err
    nocaps["images"][3]["domain"] = "near-domain"        # listed twice, one domain: harmless
    write(tmp / "nocaps.json", nocaps)
    assert coco_files.read_domains(refs) == {1: "in-domain", 2: "near-domain", 3: "out-domain"}


def test_coco_results_name_is_checked_before_anything_is_read(tmp_path):
    from fsgr.errors import DataError

    for bad in ("../../x", "a/b", "", "x y"):
        with pytest.raises(DataError, match="--coco-results"):
            coco_files.check_results_name(bad)
    assert coco_files.coco_results_path(tmp_path, "val2014", "fsgr-1").name == "captions_val2014_fsgr-1_results.json"
