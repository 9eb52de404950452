"""`fsgr export --format onnx`: the captioner as three ONNX graphs, the vocabulary and the decoding settings.

    encoder.onnx       images (B, 3, S, S) -> memory (B, P, d), memory_pos (1, P, d), map_ids (B, P) (map labels)
    cross.onnx         memory, memory_pos -> cross_k, cross_v (L, B, h, P, dh): every layer's cross-attention K/V
    decoder_step.onnx  one decoder step on a fixed-size cache:
                       tokens (N,), step () int64, self_k, self_v (L, N, h, T, dh), key_valid (N, T) bool,
                       cross_k, cross_v -> logprobs (N, V), self_k, self_v, key_valid (the grown cache)
    config.json, vocab.json, concepts.json, fsgr-manifest.json (every file's SHA-256: fsgr.core.export_folder)

The step graph keeps the PyTorch decoder's cache semantics on static shapes (T = decoder.max_len): the token fed at step
t writes its keys/values into slot t and marks it valid unless it is <pad>; attention masks every other slot. Beam
search, greedy and the decoding controls then run unchanged (fsgr.models.decoding) on onnxruntime
(fsgr.export.runtime), so captions match the checkpoint's.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
import torch.nn as nn

from fsgr.errors import ConfigError
from fsgr.core import export_folder

OPSET = 18


class EncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        enc = self.model.encode(images, backbone_grad=False, concept_map=True)
        return enc.memory, enc.memory_pos, enc.map_ids         # the map labels, as the PyTorch Captioner shows


class CrossGraph(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, memory: torch.Tensor, memory_pos: torch.Tensor):
        cache = self.decoder.init_cache(memory, memory_pos)
        return torch.stack(cache.cross_k), torch.stack(cache.cross_v)


class StepGraph(nn.Module):
    """Decoder.step on a cache of fixed length T (slot t <- the token fed at step t)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens, step, self_k, self_v, key_valid, cross_k, cross_v):
        dec = self.decoder
        slots = key_valid.shape[1]
        valid = tokens != dec.pad_id                                                       # (N,)
        positions = torch.where(valid, step + 1, torch.zeros_like(tokens))                 # pad -> position 0
        x = (dec.word_emb(tokens) + dec.pos_emb(positions))[:, None]                       # (N, 1, d)
        here = torch.arange(slots, device=tokens.device) == step                           # (T,) slot t
        key_valid = key_valid | (here[None] & valid[:, None])                              # (N, T)
        mask = key_valid[:, None, None, :]                                                 # (N, 1, 1, T)
        m_pad = valid[:, None, None].to(x.dtype)
        new_k, new_v = [], []
        for i, layer in enumerate(dec.layers):
            k_tok, v_tok = layer.self_attention.attn.project_kv(x, x)                     # (N, h, 1, dh)
            k = torch.where(here[None, None, :, None], k_tok, self_k[i])                   # (N, h, T, dh)
            v = torch.where(here[None, None, :, None], v_tok, self_v[i])
            new_k.append(k)
            new_v.append(v)
            layer_mask = mask
            if layer.memory is not None:
                k, v, layer_mask = layer.memory.extend(k, v, mask, valid[:, None])
            x = layer(x, k, v, layer_mask, cross_k[i], cross_v[i], m_pad)
        return dec._logprobs(x[:, 0]), torch.stack(new_k), torch.stack(new_v), key_valid


def cache_shape(decoder, n: int) -> tuple[int, int, int, int, int]:
    attn = decoder.layers[0].self_attention.attn
    return len(decoder.layers), n, attn.heads, decoder.max_len, attn.d_head


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, opset_version=OPSET, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=dynamic_shapes, verbose=False,
                                    external_data=False)
    program.save(str(path))


def export_onnx(captioner, out: Path) -> list[Path]:
    """Write the three graphs and the metadata of `captioner` (a fsgr.inference.Captioner) into `out`."""
    try:                               # torch.onnx.export(dynamo=True) imports them itself: fail first, in one line
        for module in ("onnx", "onnxscript"):
            importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs onnx and onnxscript ({exc.name} is missing): "
                          f"pip install 'fsgr[export]'") from None
    from torch.export import Dim

    model = captioner.model.float().eval().to("cpu")
    decoder = model.decoder
    export_folder.begin(out, "onnx")
    size = captioner.image_size
    batch, rows = Dim("batch", min=1, max=1024), Dim("rows", min=1, max=8192)
    images = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        enc = model.encode(images)
        _export(EncoderGraph(model), (images,), out / "encoder.onnx", ["images"],
                ["memory", "memory_pos", "map_ids"], ({0: batch},))
        _export(CrossGraph(decoder), (enc.memory, enc.memory_pos), out / "cross.onnx", ["memory", "memory_pos"],
                ["cross_k", "cross_v"], ({0: batch}, None))
        cross_k, cross_v = CrossGraph(decoder)(enc.memory, enc.memory_pos)
        shape = cache_shape(decoder, 2)
        step_args = (torch.tensor([captioner.vocab.bos_id] * 2), torch.tensor(0), torch.zeros(shape),
                     torch.zeros(shape), torch.zeros(2, shape[3], dtype=torch.bool), cross_k, cross_v)
        _export(StepGraph(decoder), step_args, out / "decoder_step.onnx",
                ["tokens", "step", "self_k", "self_v", "key_valid", "cross_k", "cross_v"],
                ["logprobs", "self_k_out", "self_v_out", "key_valid_out"],
                ({0: rows}, None, {1: rows}, {1: rows}, {0: rows}, {1: rows}, {1: rows}))
    export_folder.write_metadata(captioner, out, fmt="onnx")
    return export_folder.finish(out, "onnx")
