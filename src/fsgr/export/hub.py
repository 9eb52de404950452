"""`fsgr export --format safetensors`: a Hub-style folder that `fsgr.Captioner.from_pretrained(DIR)` loads.

    config.json        model_type "fsgr", the resolved config, special ids, decoding settings (fsgr.export.metadata)
    model.safetensors  the model state (CLIP weights and codebook included), no optimiser, no pickle
    vocab.json         the vocabulary (itos), concepts.json the codebook's concept names
    README.md          a model card: what it is, how to load it

The folder can be pushed to a model hub as it is (`huggingface-cli upload user/name DIR`).
"""

from __future__ import annotations

from pathlib import Path

from fsgr.errors import ConfigError
from fsgr.export.metadata import read_metadata, write_metadata

WEIGHTS = "model.safetensors"

CARD = """---
library_name: fsgr
tags: [image-captioning, fsgr, clip]
---
# FSGR image captioner

Exported by `fsgr export --format safetensors` (FSGR: "Fully Semantic Gap Recovery for End-to-End Image Captioning").
Input: {size} px images ({resize} resize); vocabulary of {vocab} words; {concepts} semantic concepts.
Decoding defaults: {decoding}.

```python
import fsgr
captioner = fsgr.Captioner.from_pretrained("this/folder")
print(captioner.caption(["photo.jpg"]))
```
"""


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ConfigError("the safetensors format needs the safetensors package: pip install 'fsgr[export]'") \
            from None
    return safetensors.torch


def export_safetensors(captioner, out: Path) -> list[Path]:
    st = _safetensors()
    out.mkdir(parents=True, exist_ok=True)
    # independent contiguous copies: safetensors refuses tensors that share storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in captioner.model.state_dict().items()}
    st.save_file(state, str(out / WEIGHTS), metadata={"format": "pt", "model_type": "fsgr"})
    meta = write_metadata(captioner, out, fmt="safetensors")
    (out / "README.md").write_text(CARD.format(size=meta["image_size"], resize=meta["resize"],
                                               vocab=meta["vocab_size"],
                                               concepts=len(captioner.codebook_names or []) or "unnamed",
                                               decoding=meta["decoding"]))
    return [out / n for n in ("config.json", WEIGHTS, "vocab.json", "concepts.json", "README.md")]


def read_pretrained(folder: Path) -> tuple[dict, list[str], list[str], dict]:
    """-> (resolved config dict, vocabulary itos, codebook names, state dict)."""
    meta, itos, names = read_metadata(folder, [WEIGHTS], "an fsgr safetensors folder")
    return meta["config"], itos, names, _safetensors().load_file(str(folder / WEIGHTS))
