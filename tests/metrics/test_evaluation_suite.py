"""`fsgr score` / `fsgr compare` beyond the toolkit metrics: signature, nocaps domains (each scored as its own
corpus, checked against the toolkit on each subset), diagnostics (hand-checked), CHAIR (hand-checked), bad input."""

import json

import numpy as np
import pytest

from fsgr.cli import main
from fsgr.metrics import score
from fsgr.metrics.chair import Synonyms, chair, ground_truth, singularize
from fsgr.metrics.diagnostics import caption_diagnostics
from fsgr.metrics.signature import short_hash, signature

DOMAINS = ("in-domain", "near-domain", "out-domain")


def write(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.fixture
def nocaps_files(tmp_path, flickr_split):
    """60 real images in nocaps layout (images carry a domain), references and one prediction each."""
    refs, preds = flickr_split
    names = list(refs)[:60]
    images = [{"id": k, "file_name": f"{k:04d}.jpg", "domain": DOMAINS[k % 3]} for k in range(len(names))]
    ann = [{"image_id": k, "id": 10 * k + j, "caption": c} for k, n in enumerate(names) for j, c in enumerate(refs[n])]
    res = [{"image_id": k, "caption": preds[n]} for k, n in enumerate(names)]
    return tmp_path, write(tmp_path / "nocaps_val.json", {"images": images, "annotations": ann}), \
        write(tmp_path / "preds.json", res), refs, preds, names


def test_signature_hashes_content_not_order():
    refs = {1: ["a dog"], 2: ["a cat", "a kitten"]}
    sig = signature(refs, {1: "dog", 2: "cat"}, ["bleu", "cider"], extra={"beam": 5})
    assert sig.startswith("fsgr:") and "images:2|refs:3" in sig and sig.endswith("|beam:5")
    assert "cider-d:n=4,sigma=6" in sig and "tok:ptb" in sig
    assert short_hash({2: ["a cat", "a kitten"], 1: ["a dog"]}) == short_hash(refs)
    assert short_hash({1: ["a \ud800"]}) != short_hash({1: ["a "]})  # a lone surrogate (JSON "\\ud800") hashes


def test_signature_hash_bytes_are_the_standard_librarys_json():
    """orjson writes what json.dumps(ensure_ascii=False, compact) writes, for every character a caption can hold."""
    import hashlib
    import json

    every = "".join(chr(c) for c in range(0x30000) if not 0xD800 <= c < 0xE000)
    for obj in ({"1": [every, "a \"dog\"\\"], 2: every[:300]}, {"x": []}, {}):
        pairs = sorted([str(k), v] for k, v in obj.items())
        expected = json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        assert short_hash(obj) == hashlib.sha256(expected).hexdigest()[:8]
    assert short_hash({1: "dog", 2: "cat"}) != short_hash({1: "dog", 2: "cats"})


def test_nocaps_domains_are_scored_as_their_own_corpus(nocaps_files, capsys, java):
    """Each domain equals the toolkit (pycocoevalcap's jar tokenizer, Bleu, Rouge, Cider) on that subset alone."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tmp, refs_path, preds_path, refs, preds, names = nocaps_files
    out = tmp / "scores.json"
    assert main(["score", "--refs", refs_path, "--preds", preds_path, "--metrics", "bleu,rouge,cider",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["domains"]) == set(DOMAINS) and "signature" in data
    tok = PTBTokenizer()
    for d, domain in enumerate(DOMAINS):
        ids = [k for k in range(len(names)) if k % 3 == d]
        gts = tok.tokenize({k: [{"caption": c} for c in refs[names[k]]] for k in ids})
        res = tok.tokenize({k: [{"caption": preds[names[k]]}] for k in ids})
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        expected = {"BLEU-4": bleu[3], "ROUGE-L": Rouge().compute_score(gts, res)[0],
                    "CIDEr": Cider().compute_score(gts, res)[0]}
        for key, value in expected.items():
            assert data["domains"][domain][key] == pytest.approx(value, abs=1e-12), (domain, key)
    # the overall corpus is not the mean of the domains (CIDEr-D's document frequencies differ)
    assert data["CIDEr"] == pytest.approx(score({k: refs[n] for k, n in enumerate(names)},
                                                {k: preds[n] for k, n in enumerate(names)}, "cider")["CIDEr"])
    assert "near-domain" in capsys.readouterr().out


def test_nocaps_domains_in_compare(nocaps_files, tmp_path):
    tmp, refs_path, preds_path, refs, preds, names = nocaps_files
    short = write(tmp / "short.json", [{"image_id": k, "caption": " ".join(preds[n].split()[:3])}
                                       for k, n in enumerate(names)])
    out = tmp / "cmp.json"
    assert main(["compare", "--refs", refs_path, "--preds", preds_path, short, "--metrics", "cider",
                 "--bootstrap", "50", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    in_domain = {k: refs[n] for k, n in enumerate(names) if k % 3 == 0}
    assert data["domains"]["in-domain"]["short"]["CIDEr"] == pytest.approx(score(
        in_domain, {k: " ".join(preds[names[k]].split()[:3]) for k in in_domain}, "cider")["CIDEr"], abs=1e-12)
    assert set(data) >= {"systems", "comparisons", "signature", "diagnostics", "largest_differences", "domains"}


def test_diagnostics_hand_checked():
    caps = ["a dog on a", "a dog runs a dog runs", "the cat sits", "two dogs play in the snow"]
    d = caption_diagnostics(caps, train_captions={"the cat sits", "a cat"})
    assert d["captions"] == 4
    assert d["mean_length"] == (4 + 6 + 3 + 6) / 4 and d["median_length"] == 5.0
    assert d["length_histogram"] == {"3": 1, "4": 1, "6": 2}
    words = "a dog on a a dog runs a dog runs the cat sits two dogs play in the snow".split()
    assert d["vocabulary"] == len(set(words)) == 12 and len(words) == 19
    assert d["distinct_1"] == pytest.approx(12 / 19)
    # bigrams: 3 + 5 + 2 + 5 = 15; distinct: (a dog) (dog on) (on a) (dog runs) (runs a) (the cat) (cat sits)
    # (two dogs) (dogs play) (play in) (in the) (the snow) = 12
    assert d["distinct_2"] == pytest.approx(12 / 15)
    assert d["repeated_ngram_share"] == 0.25  # "a dog runs a dog runs"
    ordinary = caption_diagnostics(["a man in a hat and a woman in a coat", "a wave on a wave", "the the dog"])
    assert ordinary["repeated_ngram_share"] == pytest.approx(2 / 3)
    assert d["function_word_ending_share"] == 0.25  # "... on a"
    assert d["copied_from_training_share"] == 0.25


def test_chair_hand_checked():
    """Image 1 holds a person, a dog and a frisbee (instances) and its references add a tree-free "grass" (no class)
    and "man" (person). Caption: "two men and a puppy playing with frisbees near a car and a cat"
    -> mentions man (person), puppy (dog), frisbees (frisbee), car, cat: 5 mentions, car and cat hallucinated.
    Image 2 (a cake on a dining table): "a cake on a table" -> 2 mentions, none hallucinated."""
    syn = Synonyms.load()
    assert singularize("frisbees") == "frisbee" and singularize("glasses") == "glass"
    truth = ground_truth([1, 2], {1: {"person", "dog", "frisbee"}, 2: {"cake", "dining table"}},
                         [[["a", "man", "on", "the", "grass"]], [["a", "birthday", "cake"]]], syn)
    assert truth == [{"person", "dog", "frisbee"}, {"cake", "dining table"}]
    caps = ["two men and a puppy playing with frisbees near a car and a cat".split(), "a cake on a table".split()]
    result = chair(caps, truth, syn)
    assert result["mentions"] == [5, 2] and result["hallucinated"] == [2, 0]
    assert result["hallucinated_words"][0] == [("car", "car"), ("cat", "cat")]
    assert result["CHAIR-i"] == pytest.approx(2 / 7) and result["CHAIR-s"] == 0.5
    # two-word names and the special cases of the reference
    assert [c for _, c in syn.mentions("a hot dog and a teddy bear on a toilet seat".split())] == \
        ["hot dog", "teddy bear", "toilet"]
    assert [c for _, c in syn.mentions("a baby elephant near a passenger train".split())] == ["elephant", "train"]
    # a class mentioned only by the references is ground truth
    assert "cat" in ground_truth([3], {3: set()}, [[["a", "kitten", "sleeps"]]], syn)[0]


@pytest.fixture
def chair_files(tmp_path):
    refs = {"annotations": [{"image_id": 1, "caption": "A man throws a frisbee to his dog."},
                            {"image_id": 2, "caption": "A birthday cake on a table."}]}
    inst = {"images": [{"id": 1}, {"id": 2}],
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 34, "name": "frisbee"},
                           {"id": 61, "name": "cake"}, {"id": 67, "name": "dining table"}],
            "annotations": [{"image_id": 1, "category_id": 1}, {"image_id": 1, "category_id": 18},
                            {"image_id": 1, "category_id": 34}, {"image_id": 2, "category_id": 61}]}
    preds = [{"image_id": 1, "caption": "Two men and a puppy playing with frisbees near a car and a cat."},
             {"image_id": 2, "caption": "A cake on a table."}]
    return tmp_path, write(tmp_path / "refs.json", refs), write(tmp_path / "inst.json", inst), \
        write(tmp_path / "preds.json", preds)


def test_chair_cli(chair_files, capsys):
    tmp, refs, inst, preds = chair_files
    out = tmp / "s.json"
    assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "chair,bleu", "--instances", inst,
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["CHAIR-i"] == pytest.approx(2 / 7) and data["CHAIR-s"] == 0.5 and "BLEU-4" in data
    assert "chair:" in data["signature"]


def test_chair_without_instances_is_unavailable(chair_files, capsys):
    tmp, refs, inst, preds = chair_files
    assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "chair"]) == 1
    captured = capsys.readouterr()
    assert "CHAIR-i  unavailable" in captured.out and "--instances" in captured.err


def test_bad_input_is_one_line(chair_files, capsys, tmp_path):
    tmp, refs, inst, preds = chair_files
    other = write(tmp / "other.json", {"images": [{"id": 1}], "categories": [], "annotations": []})
    assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "chair", "--instances", other]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other.json" in err and "2" in err.split("image ids")[-1]
    for instances, why in ((tmp / "none.json", "none.json: no such file"), (tmp, "is a directory, not a COCO")):
        assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "chair", "--instances",
                     str(instances)]) == 2
        assert why in capsys.readouterr().err
    assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "clipscore", "--clip", "x.pt"]) == 2
    assert "without --images" in capsys.readouterr().err
    assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "clipscore"]) == 1
    assert "no CLIP given" in capsys.readouterr().err
    fewer = write(tmp / "fewer.json", [{"image_id": 1, "caption": "a dog"}])
    assert main(["compare", "--refs", refs, "--preds", preds, fewer, "--metrics", "bleu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fewer.json" in err and "2" in err


def test_compare_cli_json_is_deterministic(chair_files, capsys):
    tmp, refs, inst, preds = chair_files
    other = write(tmp / "b.json", [{"image_id": 1, "caption": "A man and a dog."},
                                   {"image_id": 2, "caption": "A cake."}])
    outs = []
    for k in range(2):
        out = tmp / f"c{k}.json"
        assert main(["compare", "--refs", refs, "--preds", preds, other, "--metrics", "bleu,cider,chair",
                     "--instances", inst, "--bootstrap", "200", "--seed", "5", "--json", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1]
    data = outs[0]
    assert list(data["systems"]) == ["preds", "b"]
    metrics = [r["metric"] for r in data["comparisons"]]
    assert "CHAIR-i" in metrics and "CIDEr" in metrics and "BLEU-4" in metrics
    row = next(r for r in data["comparisons"] if r["metric"] == "CHAIR-i")
    assert row["delta"] == pytest.approx(0 - 2 / 7) and row["exact_resampling"]
    assert all(np.isfinite([r["ci_low"], r["ci_high"], r["p_value"]]).all() for r in data["comparisons"])
    assert "signature: " in capsys.readouterr().out


@pytest.fixture
def concept_files(chair_files):
    tmp, refs, inst, preds = chair_files
    world = {"concepts": ["man", "dog", "frisbee", "cake", "table", "car", "cat", "red car"],
             "groups": {"animals": ["dog", "cat"], "food": ["cake"]},
             "images": [{"image_id": 1, "concepts": ["man", "dog", "frisbee"]},
                        {"image_id": 2, "concepts": ["cake", "table"]}]}
    return tmp, refs, preds, world


def test_concepts_cli_scores_a_users_closed_world(concept_files, capsys):
    tmp, refs, preds, world = concept_files
    out = tmp / "s.json"
    assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "concepts,cider",
                 "--concepts", write(tmp / "world.json", world), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    # image 1 names frisbee, car, cat (frisbees: "frisbee" is not a contiguous phrase of "frisbees"); image 2 cake,
    # table. Holders: man, dog, frisbee (1); cake, table (2): recall = (0 + 0 + 0 + 1 + 1) / 5
    assert data["concept-recall"] == pytest.approx(2 / 5) and "CIDEr" in data
    assert data["recall:animals"] == 0.0 and data["recall:food"] == 1.0
    assert data["concept-CHAIR-i"] == pytest.approx(2 / 4)     # car and cat of 4 mentions
    assert "concepts:" in data["signature"]
    other = write(tmp / "b.json", [{"image_id": 1, "caption": "A man and a dog."},
                                   {"image_id": 2, "caption": "A cake."}])
    out = tmp / "c.json"
    assert main(["compare", "--refs", refs, "--preds", preds, other, "--metrics", "concepts",
                 "--concepts", str(tmp / "world.json"), "--bootstrap", "100", "--json", str(out)]) == 0
    row = next(r for r in json.loads(out.read_text())["comparisons"] if r["metric"] == "recall:animals")
    assert row["delta"] == pytest.approx(1.0) and row["exact_resampling"]


def test_a_bad_concept_world_is_one_line(concept_files, capsys):
    tmp, refs, preds, world = concept_files
    cases = [({**world, "images": world["images"][:1]}, "no concepts for image ids 2"),
             ({**world, "groups": {"x": ["unicorn"]}}, "group 'x' names 'unicorn'"),
             ({**world, "groups": {"vehicles": ["car"]}}, "no scored image holds a concept of group 'vehicles'"),
             ({"concepts": "dog"}, "not a concept world")]
    for k, (bad, why) in enumerate(cases):
        assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "concepts",
                     "--concepts", write(tmp / f"bad{k}.json", bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and why in err and f"bad{k}.json" in err
    assert main(["score", "--refs", refs, "--preds", preds, "--metrics", "concepts"]) == 1
    assert "--concepts" in capsys.readouterr().err
