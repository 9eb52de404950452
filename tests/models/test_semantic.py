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
