"""fsgr: FSGR image captioning (TCSVT 2025) — train, evaluate and serve, with exact Java-free COCO metrics.

`import fsgr` is cheap: torch is imported only when a model-facing name is first used.
"""

# Deferred imports: `import fsgr` stays cheap; the model stack loads when `fsgr.Captioner` is first used.

__version__ = "0.1.0"

__all__ = ["Captioner", "__version__"]


def __getattr__(name):
    if name == "Captioner":
        from fsgr.inference import Captioner

        return Captioner
    raise AttributeError(f"module 'fsgr' has no attribute {name!r}")
