"""Learning-rate schedules: one explicit formula giving the ABSOLUTE LR of each parameter group.

XE, epoch e counted from 0 (stepped once per epoch, like the reference's LambdaLR):

    lr_captioner(e) = train.lr * warm(e) * gamma ** #{m in train.lr_milestones : m <= e}
    lr_backbone(e)  = train.backbone_lr_scale * lr_captioner(e)
    warm(e)         = min(1, (e + 1) / (train.lr_warmup_epochs + 1))

With the defaults (lr 2e-4, warm-up 3, milestones [10, 12], gamma 0.2) this is the reference's ORIGINAL schedule
shifted by one epoch so that epoch 0 does not train at LR 0: 0.25, 0.5, 0.75, then 1.0 for epochs 3-9, 0.2 for 10-11,
0.04 from 12 (times 2e-4; the backbone group is 10x smaller).

SCST, epoch k counted from the switch (0):  lr(k) = scst.lr * scst.lr_gamma ** #{m in scst.lr_milestones : m <= k}
for every group (the reference keys this on the absolute epoch, so its SCST LR depended on when the switch happened;
we key it on the SCST epoch).

The schedule has no state of its own: the LR is a pure function of (phase, epoch), set at the start of every epoch,
so resuming cannot desynchronise it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LrSchedule:
    base: dict[str, float]          # group name -> absolute peak LR
    warmup_epochs: int
    milestones: tuple[int, ...]
    gamma: float

    def factor(self, epoch: int) -> float:
        warm = min(1.0, (epoch + 1) / (self.warmup_epochs + 1))
        return warm * self.gamma ** sum(1 for m in self.milestones if m <= epoch)

    def lr(self, group: str, epoch: int) -> float:
        return self.base[group] * self.factor(epoch)

    def apply(self, optimizer, epoch: int) -> dict[str, float]:
        """Set every group's LR for `epoch`; returns {group name: lr} for logging."""
        lrs = {}
        for group in optimizer.param_groups:
            group["lr"] = self.lr(group["name"], epoch)
            lrs[group["name"]] = group["lr"]
        return lrs


def xe_schedule(train_cfg) -> LrSchedule:
    return LrSchedule(
        base={"captioner": train_cfg.lr, "backbone": train_cfg.lr * train_cfg.backbone_lr_scale},
        warmup_epochs=train_cfg.lr_warmup_epochs, milestones=tuple(train_cfg.lr_milestones), gamma=train_cfg.lr_gamma)


def scst_schedule(scst_cfg) -> LrSchedule:
    return LrSchedule(base={"captioner": scst_cfg.lr, "backbone": scst_cfg.lr}, warmup_epochs=0,
                      milestones=tuple(scst_cfg.lr_milestones), gamma=scst_cfg.lr_gamma)
