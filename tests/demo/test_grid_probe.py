"""The semantic-grid probe's pieces (fsgr.demo.grid_probe): caption parsing, naming scores, per-object labelling and the
oracle grid, which must equal what the semantic head builds when its own assignment is the given one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsgr.data.synthetic import CONCEPTS, concept_id
from fsgr.demo.grid_probe import OracleGrid, mentioned_objects, naming_scores, object_labelled, stated_relations
from fsgr.models.config import SemanticConfig
from fsgr.models.semantic import SemanticHead


def test_mentioned_objects_reads_colour_shape_phrases():
    assert mentioned_objects("a big red square to the left of a small blue circle") == \
        {concept_id("red", "square"), concept_id("blue", "circle")}
    assert mentioned_objects("three shapes : a tiny Purple star , a green triangle and two orange stars") == \
        {concept_id("purple", "star"), concept_id("green", "triangle"), concept_id("orange", "star")}
    assert mentioned_objects("a red and a blue thing on a striped background") == set()


def _obj(colour, shape, cx, cy):
    return {"colour": colour, "shape": shape, "size": "small", "cx": cx, "cy": cy, "r": 5.0}


def test_naming_and_statement_scores():
    red, blue, green = (concept_id("red", "square"), concept_id("blue", "circle"), concept_id("green", "star"))
    objects = {1: {red: _obj("red", "square", 10, 50)},
               2: {blue: _obj("blue", "circle", 10, 50), green: _obj("green", "star", 80, 50)}}
    objects[2][green]["size"] = "large"
    preds = {1: "a tiny red square to the left of a big yellow star on a striped background",   # no yellow star
             2: "two shapes , a blue circle to the left of a big green star and a green star above a blue circle"}
    assert stated_relations(preds[2]) == [(blue, "to the left of", green), (green, "above", blue)]
    s = naming_scores(preds, objects, backgrounds={1: "checkered", 2: "striped"})
    assert s["exact"] == 0.5 and s["recall"] == 1.0 and s["precision"] == 3 / 4
    assert s["relations_stated"] == 2 and s["relations_true"] == 0.5   # the star is right of the circle, not above
    assert s["sizes_stated"] == 2 and s["sizes_true"] == 1.0           # tiny red square, big green star
    assert s["backgrounds_stated"] == 1 and s["backgrounds_true"] == 0.0
    assert s["counts_stated"] == 1 and s["counts_true"] == 1.0


def test_object_labelled_needs_most_of_the_objects_patches():
    truth = torch.tensor([0, 5, 5, 5, 7, 7])
    ids = torch.tensor([3, 5, 5, 1, 7, 2])
    assert object_labelled(ids, truth) == {5: True, 7: False}     # 2/3 of object 5, 1/2 of object 7


def test_oracle_grid_equals_the_heads_grid_for_its_own_assignment():
    g = torch.Generator().manual_seed(0)
    codebook = F.normalize(torch.randn(len(CONCEPTS), 16, generator=g), dim=-1)
    glob = F.normalize(torch.randn(2, 16, generator=g), dim=-1)
    patches = F.normalize(torch.randn(2, 9, 16, generator=g), dim=-1)
    head = SemanticHead(SemanticConfig(topk=len(CONCEPTS), codebook_size=len(CONCEPTS)), codebook).eval()
    scale = torch.tensor(100.0).log()
    own = head(glob, patches, scale)
    oracle = OracleGrid(head, own.concept_ids)(glob, patches, scale)
    torch.testing.assert_close(oracle.grid, own.grid)
    other = torch.randint(0, len(CONCEPTS), (2, 9), generator=g)
    moved = OracleGrid(head, other)(glob, patches, scale)
    assert torch.equal(moved.concept_ids, other) and not torch.allclose(moved.grid, own.grid)
    assert torch.equal(moved.topk_ids, own.topk_ids)               # everything else is the head's


def test_oracle_grid_stands_in_for_the_head_inside_the_captioner():
    """The probe swaps OracleGrid in for model.semantic and decodes: encode must find what it asks the head for
    (needs_dense_labels, dense_labels on a labels_from=dense model) and take the given ids."""
    from fsgr.config import load_config
    from fsgr.core.build import build_model
    from fsgr.data.vocab import Vocab

    cfg = load_config("demo")
    assert cfg.model.semantic.labels_from == "dense"
    model, _, _ = build_model(cfg, Vocab(["<unk>", "<pad>", "<bos>", "<eos>", "a"]))
    model.eval()
    images = torch.randn(2, 3, 96, 96)
    given = torch.randint(0, len(CONCEPTS), (2, 64), generator=torch.Generator().manual_seed(0))
    head = model.semantic
    model.semantic = OracleGrid(head, given)
    assert model.semantic.needs_dense_labels and model.semantic.codebook_size == len(CONCEPTS)
    with torch.no_grad():
        assert torch.equal(model.encode(images).concept_ids, given)
