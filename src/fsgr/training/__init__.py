"""Training: XE (+ patch SupCon) then SCST, evaluation, checkpoints. `fsgr.training.train(cfg) -> summary`.

Kept import-light (fsgr.config imports fsgr.training.config): the engine and torch load on first use of `train`."""

__all__ = ["train"]


def __getattr__(name):
    if name == "train":
        from fsgr.training.engine import train

        return train
    raise AttributeError(f"module 'fsgr.training' has no attribute {name!r}")
