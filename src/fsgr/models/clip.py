"""CLIP (ViT image tower + causal text tower) in OpenAI's parameter layout, with checkpoint loading.

Written here (no open_clip / torchvision): the module and parameter names are OpenAI's (`visual.conv1`,
`visual.transformer.resblocks.N.attn.in_proj_weight`, ..., `text_projection`, `logit_scale`), so OpenAI's TorchScript
archives (`ViT-B-16.pt`) and plain state dicts load with a strict key/shape check. Activations are batch-first
(B, L, W); attention is `F.scaled_dot_product_attention` (causal for text), so GPUs get fused kernels. Weights are kept
fp32 on the CPU when loaded; precision is chosen later by autocast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Union

import torch
import torch.nn.functional as F
from torch import nn

from fsgr.errors import CheckpointError
from fsgr.files import atomic_write, existing_file, why_unloadable
from fsgr.models.config import ClipConfig
from fsgr.models.tokenizer import tokenize  # noqa: F401  (re-exported: fsgr.models.clip.tokenize is the contract)

__all__ = ["CLIP", "VisionTransformer", "Transformer", "ResidualAttentionBlock", "SelfAttention", "QuickGELU",
           "build_clip", "clip_config_from_state_dict", "load_clip", "save_clip", "weights_fingerprint", "tokenize",
           "convert_hf_state_dict"]


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names (packed in_proj, out_proj)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, W) -> q, k, v, each (B, heads, L, W/heads)."""
        B, L, W = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def merge_heads(self, o: torch.Tensor) -> torch.Tensor:
        """(B, heads, L, d) -> out_proj of (B, L, heads*d)."""
        B, H, L, d = o.shape
        return self.out_proj(o.transpose(1, 2).reshape(B, L, H * d))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = self.qkv(x)
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=causal))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with a 4x QuickGELU MLP."""

    def __init__(self, width: int, heads: int, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.attn = SelfAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.ln_1(x), causal=self.causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(x)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal: bool = False):
        super().__init__()
        self.width, self.layers, self.heads = width, layers, heads
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, causal) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    """CLIP's ViT: patchify conv, [CLS] + patches + learned position embedding, ln_pre, blocks, ln_post(CLS) @ proj."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int):
        super().__init__()
        if input_resolution % patch_size:
            raise ValueError(f"image resolution {input_resolution} is not a multiple of the patch size {patch_size}")
        self.input_resolution, self.patch_size, self.width, self.output_dim = input_resolution, patch_size, width, output_dim
        self.grid_size = input_resolution // patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) -> tokens [CLS, patches] + position embedding, after ln_pre: (B, 1 + grid^2, W)."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.input_resolution,) * 2:
            raise ValueError(f"expected images (B, 3, {self.input_resolution}, {self.input_resolution}) for this CLIP, "
                             f"got {tuple(images.shape)}")
        x = self.conv1(images.to(self.conv1.weight.dtype))          # (B, W, g, g)
        x = x.flatten(2).transpose(1, 2)                            # (B, g*g, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.embed(images))
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, cfg: ClipConfig):
        super().__init__()
        self.cfg = cfg
        self.context_length = cfg.context_length
        self.visual = VisionTransformer(cfg.image_resolution, cfg.vision_patch_size, cfg.vision_width,
                                        cfg.vision_layers, cfg.vision_heads, cfg.embed_dim)
        self.transformer = Transformer(cfg.transformer_width, cfg.transformer_layers, cfg.transformer_heads, causal=True)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.transformer_width))
        self.ln_final = nn.LayerNorm(cfg.transformer_width)
        self.text_projection = nn.Parameter(torch.empty(cfg.transformer_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self._init_text_tower()

    def _init_text_tower(self):
        # OpenAI's initialize_parameters
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = width ** -0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    @property
    def embed_dim(self) -> int:
        return self.text_projection.shape[1]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) CLIP-normalised images -> (B, embed_dim), not normalised (as OpenAI's)."""
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L <= context) token ids from `tokenize` -> (B, embed_dim), taken at the end-of-text token (largest id)."""
        if tokens.dim() != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(f"expected token ids (B, <= {self.context_length}), got {tuple(tokens.shape)}")
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        x = self.ln_final(self.transformer(x))
        eot = tokens.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Contrastive logits (image x text, text x image), scaled by exp(logit_scale)."""
        img = F.normalize(self.encode_image(images), dim=-1)
        txt = F.normalize(self.encode_text(tokens), dim=-1)
        logits = self.logit_scale.exp() * img @ txt.t()
        return logits, logits.t()


def build_clip(cfg: ClipConfig) -> CLIP:
    """A CLIP of the config's sizes with random (OpenAI-style) initial weights."""
    return CLIP(cfg)


# --- checkpoints ---------------------------------------------------------------------------------------------------

FORMAT = "fsgr-clip"            # the "format" of a file save_clip writes
_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")  # scalars in OpenAI's archives, not weights


def _count_blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def clip_config_from_state_dict(sd: Mapping[str, torch.Tensor], heads: Mapping[str, int] | None = None) -> ClipConfig:
    """Infer every size from the weights, as OpenAI's build_model does. Head counts are not in the weights: OpenAI's
    convention (width // 64) unless `heads` gives {'vision_heads': .., 'transformer_heads': ..}."""
    if "visual.proj" not in sd:
        if any(k.startswith("visual.layer1.") for k in sd):
            raise CheckpointError("ResNet CLIP checkpoints are not supported: FSGR needs a ViT image tower")
        raise CheckpointError("not a CLIP state dict: no 'visual.proj' key")
    needed = ["visual.conv1.weight", "visual.positional_embedding", "text_projection", "positional_embedding",
              "token_embedding.weight", "ln_final.weight"]
    missing = [k for k in needed if k not in sd]
    if missing:
        raise CheckpointError(f"not a CLIP state dict: missing {', '.join(missing)}")
    vision_width, _, patch, _ = sd["visual.conv1.weight"].shape
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    transformer_width = sd["ln_final.weight"].shape[0]
    heads = dict(heads or {})
    return ClipConfig(
        embed_dim=sd["text_projection"].shape[1],
        image_resolution=patch * grid,
        vision_layers=_count_blocks(sd, "visual.transformer.resblocks."),
        vision_width=vision_width,
        vision_patch_size=patch,
        vision_heads=int(heads.get("vision_heads", max(1, vision_width // 64))),
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0],
        transformer_width=transformer_width,
        transformer_heads=int(heads.get("transformer_heads", max(1, transformer_width // 64))),
        transformer_layers=_count_blocks(sd, "transformer.resblocks."),
    )


def convert_hf_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HuggingFace `CLIPModel` keys -> OpenAI keys (q/k/v packed into in_proj, Linear projections transposed)."""
    out: dict[str, torch.Tensor] = {}
    towers = {"vision_model.": "visual.transformer.resblocks.", "text_model.": "transformer.resblocks."}
    layer_names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                   "self_attn.out_proj": "attn.out_proj"}
    for hf_prefix, ours in towers.items():
        n_layers = _count_blocks(sd, f"{hf_prefix}encoder.layers.")
        for i in range(n_layers):
            src = f"{hf_prefix}encoder.layers.{i}."
            for kind in ("weight", "bias"):
                out[f"{ours}{i}.attn.in_proj_{kind}"] = torch.cat(
                    [sd[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0)
                for hf_name, our_name in layer_names.items():
                    out[f"{ours}{i}.{our_name}.{kind}"] = sd[f"{src}{hf_name}.{kind}"]
    v, t = "vision_model.", "text_model."
    out["visual.class_embedding"] = sd[f"{v}embeddings.class_embedding"]
    out["visual.conv1.weight"] = sd[f"{v}embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = sd[f"{v}embeddings.position_embedding.weight"]
    for kind in ("weight", "bias"):
        out[f"visual.ln_pre.{kind}"] = sd[f"{v}pre_layrnorm.{kind}"]  # sic: HF's spelling
        out[f"visual.ln_post.{kind}"] = sd[f"{v}post_layernorm.{kind}"]
        out[f"ln_final.{kind}"] = sd[f"{t}final_layer_norm.{kind}"]
    out["visual.proj"] = sd["visual_projection.weight"].t()
    out["token_embedding.weight"] = sd[f"{t}embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd[f"{t}embeddings.position_embedding.weight"]
    out["text_projection"] = sd["text_projection.weight"].t()
    out["logit_scale"] = sd["logit_scale"]
    return out


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    """Return (state dict, head hints) from a TorchScript archive, a plain state dict, or our `save_clip` file."""
    is_torchscript = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_torchscript = any("/code/" in name for name in zf.namelist())
    if is_torchscript:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; the archives still exist
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict()), {}
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: cannot read the TorchScript archive: {' '.join(str(exc).split())[:200]}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error: not a weights file
        raise CheckpointError(f"{path}: not a CLIP checkpoint (TorchScript archive or state dict): "
                              f"{why_unloadable(exc)}") from None
    hints: dict = {}
    if isinstance(obj, dict) and isinstance(obj.get("clip_config"), dict):
        hints = {k: obj["clip_config"][k] for k in ("vision_heads", "transformer_heads") if k in obj["clip_config"]}
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    return obj, hints


def _normalise_keys(sd: dict, path: Path) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if k not in _METADATA_KEYS}
    if any(k.startswith("vision_model.") for k in sd):
        sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
        try:
            sd = convert_hf_state_dict(sd)
        except KeyError as exc:
            raise CheckpointError(f"{path}: HuggingFace CLIP weights without {exc.args[0]!r}") from exc
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(bad[:5])}")
    # fp32 on the CPU whatever the file holds (OpenAI's archives are fp16)
    return {k: (v.float() if v.is_floating_point() else v).cpu().contiguous() for k, v in sd.items()}


def _check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = [f"{k} file {tuple(sd[k].shape)} vs model {expected[k]}" for k in sorted(set(sd) & set(expected))
                  if tuple(sd[k].shape) != expected[k]]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            problems.append(f"{len(items)} {label}: {', '.join(items[:6])}{', ...' if len(items) > 6 else ''}")
    if problems:
        raise CheckpointError(f"{source}: does not match the CLIP architecture inferred from it; " + "; ".join(problems))


def load_clip(path: Union[str, Path]) -> CLIP:
    """Read a CLIP: OpenAI TorchScript archive, state dict with OpenAI keys (optionally wrapped in 'state_dict' or
    'model', optionally 'module.'-prefixed), HuggingFace CLIPModel weights, or a file from `save_clip`. Sizes are inferred
    from the weights; loading is strict; values are fp32 on the CPU. The model is returned in eval mode."""
    path = existing_file(Path(path), "a CLIP checkpoint file", CheckpointError, "CLIP checkpoint not found")
    raw, hints = _read_checkpoint(path)
    sd = _normalise_keys(raw, path)
    cfg = clip_config_from_state_dict(sd, hints)
    cfg.path = str(path)
    with torch.device("meta"):
        model = CLIP(cfg)
    _check_state_dict(model, sd, str(path))
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def save_clip(model: CLIP, path: Union[str, Path]) -> None:
    """Save as a plain state dict with OpenAI keys plus the config (head counts are not inferable from weights)."""
    payload = {"format": FORMAT, "version": 1, "clip_config": dataclasses.asdict(model.cfg),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(payload, f))


def weights_fingerprint(model_or_state_dict: Union[nn.Module, Mapping[str, torch.Tensor]]) -> str:
    """A stable 16-hex-digit hash of the image tower's weights (names, shapes, fp32 values).

    Only the `visual.` weights count: a captioner keeps just the image tower, and it is the tower whose features the
    codebook's text embeddings must match. Accepts a CLIP, anything with a `.visual` tower, a VisionTransformer, or a
    state dict with either full CLIP keys or bare image-tower keys."""
    obj = model_or_state_dict
    if isinstance(obj, nn.Module):
        obj = (obj.visual if hasattr(obj, "visual") else obj).state_dict()
    elif any(k.startswith("visual.") for k in obj):
        obj = {k[len("visual."):]: v for k, v in obj.items() if k.startswith("visual.")}
    digest = hashlib.sha256()
    for key in sorted(obj):
        value = obj[key].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(value.shape)};".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:16]
