"""OpenAI's own CLIP code (`openai-clip` package) as the test oracle, imported file by file: `clip/__init__.py` pulls
torchvision, which the project does not depend on. `model.py` needs only torch; `simple_tokenizer.py` needs ftfy+regex."""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import pytest


def _clip_dir() -> Path:
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the 'openai-clip' test dependency is not installed (pip install --no-deps openai-clip)")
    return Path(list(spec.submodule_search_locations)[0])


def _load(name: str):
    key = f"_openai_clip_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, _clip_dir() / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def openai_model():
    """OpenAI's `clip/model.py` (CLIP, VisionTransformer, build_model)."""
    return _load("model")


@lru_cache()
def openai_tokenizer():
    """OpenAI's SimpleTokenizer over our shipped merges file (identical to the one in the openai-clip package)."""
    module = _load("simple_tokenizer")
    return module.SimpleTokenizer(str(_clip_dir() / "bpe_simple_vocab_16e6.txt.gz"))


def openai_tokenize(texts, context_length=77):
    """`clip.tokenize` reproduced from `clip/clip.py` (which cannot be imported without torchvision)."""
    import torch

    tok = openai_tokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot] + tok.encode(text) + [eot]
        out[i, :len(ids)] = torch.tensor(ids)
    return out


# small, but with >1 head everywhere, a non-square-ish embed dim and a short vocab; width // 64 heads as OpenAI infers
SIZES = dict(embed_dim=48, image_resolution=32, vision_layers=2, vision_width=128, vision_patch_size=8,
             context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2)


def random_openai_clip():
    """OpenAI's CLIP at SIZES with random weights (perturbed so biases and LayerNorms are not at their trivial init)."""
    import torch

    torch.manual_seed(0)
    model = openai_model().CLIP(**SIZES).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or name.startswith("ln"):
                p.add_(0.05 * torch.randn_like(p))
        model.logit_scale.fill_(4.6052)
    return model
