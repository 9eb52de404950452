"""Training losses: teacher-forced NLL, patch-level supervised contrastive (SupCon), and the SCST policy gradient.

Every loss returns a SUM plus the count it should be divided by, so that data-parallel processes and accumulation
micro-batches can divide by the GLOBAL count (one process and N processes then compute the same number).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def nll_sum(logprobs: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, int]:
    """Sum of -log p(w_{t+1} | w_<=t) over non-pad targets, and the number of such targets (reading the count from
    device tokens waits for the device: the training step uses `token_nll` with a count taken on the host)."""
    return token_nll(logprobs, tokens, pad_id), num_targets(tokens, pad_id)


def token_nll(logprobs: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Sum of -log p(w_{t+1} | w_<=t) over non-pad targets, a 0-d tensor on the model's device.

    logprobs (N, L, V) are the model's outputs for the inputs tokens[:, :L]; targets are tokens[:, 1:]."""
    pred = logprobs[:, :-1].float()                     # (N, L-1, V)
    target = tokens[:, 1:]                              # (N, L-1)
    return F.nll_loss(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=pad_id, reduction="sum")


def num_targets(tokens: torch.Tensor, pad_id: int) -> int:
    return int((tokens[:, 1:] != pad_id).sum())


def _supcon_chunk(anchors: torch.Tensor, feats: torch.Tensor, anchor_labels: torch.Tensor, labels: torch.Tensor,
                  anchor_index: torch.Tensor, temperature: float, base_temperature: float) -> torch.Tensor:
    """Sum over the chunk's anchors of SupCon's per-anchor loss (Khosla et al.'s SupConLoss, mode 'all', 1 view)."""
    logits = anchors @ feats.T / temperature                         # (c, N)
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = torch.ones_like(logits, dtype=torch.bool)
    not_self[torch.arange(len(anchors), device=logits.device), anchor_index] = False
    positive = (anchor_labels[:, None] == labels[None, :]) & not_self
    # log p_ij = logit_ij - log sum_{j' != i} exp(logit_ij')
    log_denominator = torch.logsumexp(logits.masked_fill(~not_self, float("-inf")), dim=1, keepdim=True)
    log_prob = logits - log_denominator
    num_pos = positive.sum(1)
    mean_log_prob_pos = (log_prob * positive).sum(1) / num_pos.clamp(min=1)   # anchors without positives give 0
    return -(temperature / base_temperature) * mean_log_prob_pos.sum()


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07,
                base_temperature: float = 0.07, chunk: int = 4096) -> torch.Tensor:
    """Supervised contrastive loss over N vectors (Khosla et al. 2020, `SupConLoss.forward`, one view, mode 'all').

    features (N, D) are L2-normalised here; labels (N,) integer concept ids. Positives of anchor i: every j != i with
    the same label, across the whole batch; anchors with no positive count 0 in the mean over all N anchors (as the
    reference). Memory: the N x N logits are built `chunk` anchors at a time, and each chunk is recomputed in the
    backward pass (activation checkpointing), so peak memory is O(chunk x N) instead of several N x N matrices."""
    feats = F.normalize(features.float(), dim=-1)
    labels = labels.reshape(-1).to(feats.device)
    n = feats.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"supcon_loss: {n} features but {labels.shape[0]} labels")
    total = feats.new_zeros(())
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(start + chunk, n), device=feats.device)
        args = (feats[idx], feats, labels[idx], labels, idx, temperature, base_temperature)
        if feats.requires_grad and n > chunk:
            total = total + checkpoint(_supcon_chunk, *args, use_reentrant=False)
        else:
            total = total + _supcon_chunk(*args)
    return total / n


def patch_contrastive_loss(out, patch_labels: Optional[torch.Tensor], train_cfg) -> torch.Tensor:
    """The patch SupCon term of a captioner output, in training and validation alike: features `out.contrast_feats`
    (B, P, d) labelled by the offline `patch_labels` (data.patch_labels) when given, else by the semantic head's
    concept ids (targets, never differentiated)."""
    labels = patch_labels if patch_labels is not None else out.concept_ids.detach()
    feats = out.contrast_feats
    return supcon_loss(feats.reshape(-1, feats.shape[-1]), labels.reshape(-1), train_cfg.contrastive_temperature,
                       train_cfg.contrastive_base_temperature, train_cfg.contrastive_chunk)


def scst_sample_loss(logprobs: torch.Tensor, mask: torch.Tensor, advantage: torch.Tensor) -> tuple[torch.Tensor, int]:
    """SacreEOS 'standard' SCST: -sum_t A * log p_t over generated tokens up to AND INCLUDING <eos>.

    logprobs, mask (B, K, T); advantage (B, K). Returns (sum, number of tokens): divide by the global token count."""
    loss = -(logprobs * mask * advantage[..., None]).sum()
    return loss, int(mask.sum())


def scst_beam_loss(logprobs: torch.Tensor, advantage: torch.Tensor, max_len: int) -> tuple[torch.Tensor, int]:
    """M2/FSGR SCST: mean over images and beams of -(1/max_len) sum_t log p_t (r - b), log p zero after <eos>.

    logprobs (B, K, T) with T <= max_len; returns (sum over beams, number of beams)."""
    per_beam = -(logprobs.sum(-1) / max_len) * advantage
    return per_beam.sum(), int(per_beam.numel())


def through_eos_mask(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1.0 for generated tokens up to and including the first <eos>, 0.0 after it. tokens (..., T)."""
    is_eos = tokens == eos_id
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return (~after_eos).float()


def scst_baseline(rewards: torch.Tensor, mode: str) -> torch.Tensor:
    """rewards (B, K) -> baseline (B, K): 'sample' = mean of the OTHER K-1 samples of the image (Luo's NSC);
    'beam' = mean of all K beams (M2)."""
    k = rewards.shape[1]
    if mode == "sample":
        if k < 2:
            raise ValueError("the mean-of-others baseline needs at least 2 samples per image (scst.num_samples)")
        return (rewards.sum(1, keepdim=True) - rewards) / (k - 1)
    return rewards.mean(1, keepdim=True).expand_as(rewards)
