import pytest
import torch
import torch.nn.functional as F

from fsgr.models.config import SemanticConfig
from fsgr.models.semantic import SemanticHead

LOG100 = torch.tensor(100.0).log()


def _inputs(b=2, p=9, e=16, c=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    codebook = F.normalize(torch.randn(c, e, generator=g), dim=-1)
    glob = F.normalize(torch.randn(b, e, generator=g), dim=-1)
    patches = F.normalize(torch.randn(b, p, e, generator=g), dim=-1)
    return codebook, glob, patches


def test_eval_assignment_is_clean_argmax_over_topk_and_grid_is_group_normalised():
    codebook, glob, patches = _inputs()
    head = SemanticHead(SemanticConfig(topk=5, codebook_size=30), codebook).eval()
    out = head(glob, patches, LOG100)
    assert out.grid.shape == (2, 9, 16) and out.concept_ids.shape == (2, 9) and out.concept_ids.dtype == torch.long
    # preselection = top-5 cosine of the global feature with the codebook
    expected_topk = (glob @ codebook.t()).topk(5, dim=-1).indices
    assert torch.equal(out.topk_ids, expected_topk)
    for b in range(2):
        sims = patches[b] @ codebook[expected_topk[b]].t()            # (P, k)
        ids = expected_topk[b][sims.argmax(dim=1)]
        assert torch.equal(out.concept_ids[b], ids)
        counts = torch.bincount(ids, minlength=30).float()
        expected_grid = codebook[ids] / (counts[ids] + 1)[:, None]    # t_k / (n_k + 1)
        torch.testing.assert_close(out.grid[b], expected_grid)
    # logits carry CLIP's exp(logit_scale)
    torch.testing.assert_close(out.logits[0], 100 * codebook[expected_topk[0]] @ patches[0].t())


def test_group_norm_switch_off_gives_the_raw_concept_embeddings():
    codebook, glob, patches = _inputs()
    head = SemanticHead(SemanticConfig(topk=5, group_norm=False), codebook).eval()
    out = head(glob, patches, LOG100)
    torch.testing.assert_close(out.grid, codebook[out.concept_ids])


def test_training_gumbel_straight_through_gradient_flows_and_ids_follow_the_assignment():
    codebook, glob, patches = _inputs(b=3, p=49, c=40)
    head = SemanticHead(SemanticConfig(topk=8, ids_from="assignment"), codebook).train()
    patches = patches.clone().requires_grad_(True)
    torch.manual_seed(0)
    out = head(glob, patches, torch.tensor(0.0))   # scale 1: noise dominates, so noisy != clean somewhere
    out.grid.square().sum().backward()
    assert patches.grad is not None and patches.grad.abs().sum() > 0     # straight-through path reaches the patches
    assert not head.codebook.requires_grad and "codebook" not in dict(head.named_parameters())
    # B31 'assignment': ids are those of the assignment that built S (S rows are multiples of the chosen concept)
    cos = F.cosine_similarity(out.grid.detach(), codebook[out.concept_ids], dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))
    clean = out.topk_ids.gather(1, out.logits.argmax(dim=1))
    assert not torch.equal(clean, out.concept_ids)      # Gumbel noise changed some assignments


def test_clean_ids_default_returns_ref_argmax_in_training():
    codebook, glob, patches = _inputs(b=3, p=49, c=40)
    assert SemanticConfig().ids_from == "clean"          # SupCon's features see the patch, not S (B31)
    head = SemanticHead(SemanticConfig(topk=8), codebook).train()
    out = head(glob, patches, torch.tensor(0.0))
    assert torch.equal(out.concept_ids, out.topk_ids.gather(1, out.logits.argmax(dim=1)))


def test_topk_larger_than_codebook_is_refused():
    codebook, _, _ = _inputs(c=4)
    with pytest.raises(ValueError, match="exceeds the codebook size 4"):
        SemanticHead(SemanticConfig(topk=20), codebook)


def test_labels_from_dense_label_supcon_with_the_whole_codebook_labels():
    codebook, glob, patches = _inputs()
    dense_ids, _ = SemanticHead(SemanticConfig(topk=5), codebook).dense_labels(patches, LOG100)
    head = SemanticHead(SemanticConfig(topk=5, labels_from="dense"), codebook).eval()
    out = head(glob, patches, LOG100, dense_ids=dense_ids)
    assert torch.equal(out.concept_ids, dense_ids)
    # S is still built from the head's own top-k assignment
    plain = SemanticHead(SemanticConfig(topk=5), codebook).eval()(glob, patches, LOG100)
    torch.testing.assert_close(out.grid, plain.grid)
    assert not torch.equal(plain.concept_ids, dense_ids)     # random data: the two label sources differ
    with pytest.raises(ValueError, match="dense_ids"):
        head(glob, patches, LOG100)


def test_dense_preselection_ranks_concepts_by_their_dense_patch_counts():
    codebook, glob, patches = _inputs(p=9)
    # image 0: concept 7 on 5 patches, concept 3 on 4; image 1: concept 11 everywhere
    dense_ids = torch.tensor([[7] * 5 + [3] * 4, [11] * 9])
    head = SemanticHead(SemanticConfig(topk=4, preselect="dense"), codebook).eval()
    out = head(glob, patches, LOG100, dense_ids=dense_ids)
    assert out.topk_ids[0, :2].tolist() == [7, 3] and out.topk_ids[1, 0].item() == 11
    # the rest of the k by the global cosine, as REF's preselection
    rest = [c for c in (glob[1] @ codebook.t()).argsort(descending=True).tolist() if c != 11][:3]
    assert out.topk_ids[1, 1:].tolist() == rest


def test_given_ids_build_the_grid_and_ids_whatever_the_patches_show():
    codebook, glob, patches = _inputs()
    head = SemanticHead(SemanticConfig(topk=5, codebook_size=30), codebook).train()
    given = torch.tensor([[0, 0, 3, 3, 3, 7, 0, 29, 29], [1] * 9])
    out = head(glob, patches, LOG100, given_ids=given)
    assert torch.equal(out.concept_ids, given)
    for b in range(2):
        counts = torch.bincount(given[b], minlength=30).float()
        torch.testing.assert_close(out.grid[b], codebook[given[b]] / (counts[given[b]] + 1)[:, None])
    # the head's own assignment is still computed (topk, logits) but does not reach S
    assert out.topk_ids.shape == (2, 5)


def test_grid_codebook_changes_the_language_of_s_not_the_labels():
    """The ablation's `permuted`: labels from the true rows, S from permuted ones. (Labelling with permuted rows
    would pick the same vectors under other indices and change nothing: the bug this guards against.)"""
    codebook, glob, patches = _inputs()
    order = torch.roll(torch.arange(30), 1)
    plain = SemanticHead(SemanticConfig(topk=5, codebook_size=30), codebook).eval()
    permuted = SemanticHead(SemanticConfig(topk=5, codebook_size=30), codebook, codebook[order]).eval()
    a, b = plain(glob, patches, LOG100), permuted(glob, patches, LOG100)
    assert torch.equal(a.concept_ids, b.concept_ids) and torch.equal(a.topk_ids, b.topk_ids)
    for i in range(2):
        counts = torch.bincount(b.concept_ids[i], minlength=30).float()
        expected = codebook[order][b.concept_ids[i]] / (counts[b.concept_ids[i]] + 1)[:, None]
        torch.testing.assert_close(b.grid[i], expected)
    assert not torch.allclose(a.grid, b.grid)
    assert set(permuted.state_dict()) == {"codebook", "grid_codebook"} and set(plain.state_dict()) == {"codebook"}
