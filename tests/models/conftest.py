import pytest
import torch

from fsgr.models.clip import build_clip
from fsgr.models.config import ClipConfig

TINY_CLIP = ClipConfig(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                       vision_heads=1, context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                       transformer_layers=1)


@pytest.fixture(scope="module")
def clip():
    """A tiny random CLIP in OpenAI's layout (text tower for codebooks)."""
    torch.manual_seed(0)
    return build_clip(TINY_CLIP).eval()
