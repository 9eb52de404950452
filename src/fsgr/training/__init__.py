"""Training: XE (+ patch SupCon) then SCST, evaluation, checkpoints. `fsgr.training.train(cfg) -> summary`."""

from fsgr.training.engine import train

__all__ = ["train"]
