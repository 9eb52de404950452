import pytest
import torch
import torch.nn.functional as F

from fsgr.training.losses import nll_sum, scst_beam_loss, scst_sample_loss, supcon_loss
from fsgr.training.schedules import scst_schedule, xe_schedule
from fsgr.recipe_config import ScstConfig, TrainConfig


def reference_supcon(features, labels, temperature=0.07, base_temperature=0.07):
    """SupConLoss.forward of the reference (Khosla et al.), one view, contrast_mode='all', written with N x N."""
    feats = F.normalize(features, dim=-1)
    labels = labels.view(-1, 1)
    mask = torch.eq(labels, labels.T).float()
    logits = feats @ feats.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    logits_mask = 1 - torch.eye(len(feats))
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1).clamp(min=1)
    return (-(temperature / base_temperature) * mean_log_prob_pos).mean()


def test_supcon_matches_reference_formula_and_chunking_keeps_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 16, generator=g)
    labels = torch.randint(0, 6, (37,), generator=g)
    labels[0] = 99  # an anchor without positives contributes 0 but still counts in the mean
    x1 = x.clone().requires_grad_(True)
    ref = reference_supcon(x1, labels)
    ref.backward()
    for chunk in (37, 8, 5):
        x2 = x.clone().requires_grad_(True)
        ours = supcon_loss(x2, labels, chunk=chunk)
        ours.backward()
        assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
        assert torch.allclose(x2.grad, x1.grad, atol=1e-6)


def test_supcon_pulls_same_label_together():
    # Minimising the loss must reduce the distance between same-label vectors (the reference's B10 did the opposite).
    torch.manual_seed(0)
    x = torch.randn(12, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 2] * 4)
    opt = torch.optim.SGD([x], lr=0.5)
    def same_label_cos():
        f = F.normalize(x.detach(), dim=-1)
        sims = f @ f.T
        m = (labels[:, None] == labels[None]) & ~torch.eye(12, dtype=torch.bool)
        return sims[m].mean().item()
    before = same_label_cos()
    for _ in range(20):
        opt.zero_grad()
        supcon_loss(x, labels).backward()
        opt.step()
    assert same_label_cos() > before + 0.2


def test_nll_sum_ignores_pad_and_counts_targets():
    logprobs = torch.log_softmax(torch.randn(2, 4, 7), -1)
    tokens = torch.tensor([[2, 5, 3, 1], [2, 6, 4, 3]])  # pad_id 1
    total, count = nll_sum(logprobs, tokens, pad_id=1)
    expected = -(logprobs[0, 0, 5] + logprobs[0, 1, 3] + logprobs[1, 0, 6] + logprobs[1, 1, 4] + logprobs[1, 2, 3])
    assert count == 5 and total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_scst_losses():
    logprobs = torch.tensor([[[-1.0, -2.0, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    adv = torch.tensor([[0.5]])
    s, n = scst_sample_loss(logprobs, mask, adv)
    assert n == 2 and s.item() == pytest.approx(1.5)
    s, n = scst_beam_loss(logprobs, adv, max_len=20)
    assert n == 1 and s.item() == pytest.approx(3.0 / 20 * 0.5)


def test_xe_schedule_is_absolute_and_matches_documented_formula():
    sched = xe_schedule(TrainConfig())
    got = [sched.lr("captioner", e) for e in range(14)]
    want = [2e-4 * f for f in [0.25, 0.5, 0.75] + [1.0] * 7 + [0.2, 0.2, 0.04, 0.04]]
    assert got == pytest.approx(want)
    assert sched.lr("backbone", 5) == pytest.approx(2e-5)
    assert scst_schedule(ScstConfig()).lr("captioner", 13) == pytest.approx(1e-5 * 0.04)
    opt = torch.optim.Adam([{"params": [torch.zeros(1, requires_grad=True)], "name": "captioner", "lr": 1.0},
                            {"params": [torch.zeros(1, requires_grad=True)], "name": "backbone", "lr": 1.0}])
    assert sched.apply(opt, 0) == pytest.approx({"captioner": 5e-5, "backbone": 5e-6})
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)


def test_scst_mask_counts_eos_and_baselines():
    from fsgr.training.losses import scst_baseline, through_eos_mask

    tokens = torch.tensor([[5, 6, 3, 1, 1], [5, 3, 7, 3, 1], [5, 6, 7, 8, 9]])   # eos 3, pad 1
    assert through_eos_mask(tokens, 3).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    r = torch.tensor([[1.0, 2.0, 3.0]])
    assert scst_baseline(r, "sample").tolist() == [[2.5, 2.0, 1.5]]     # mean of the others
    assert scst_baseline(r, "beam").tolist() == [[2.0, 2.0, 2.0]]
    with pytest.raises(ValueError, match="num_samples"):
        scst_baseline(torch.ones(2, 1), "sample")
