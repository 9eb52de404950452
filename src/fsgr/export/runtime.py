"""Running an ONNX export (`fsgr export --format onnx`) on onnxruntime with fsgr's own search.

`OnnxCaptioner(DIR)` is a CaptionerBase: `settings`, `generate`, `caption`, `preprocess`, `concept_name` ... as the
PyTorch Captioner. The graphs compute; the search is fsgr.models.decoding's, driven through an `OnnxDecoder` that has
the PyTorch decoder's `init_cache` / `step` contract, so every decoding control behaves as on the checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch

from fsgr.errors import CheckpointError, ConfigError
from fsgr.core.export_folder import GRAPHS, read_metadata
from fsgr.inference import CaptionerBase


@dataclass
class OnnxCache:
    """The step graph's fixed-size cache (numpy), rows = decoded sequences."""

    self_k: np.ndarray          # (L, N, h, T, dh)
    self_v: np.ndarray
    key_valid: np.ndarray       # (N, T) bool
    cross_k: np.ndarray         # (L, N, h, P, dh)
    cross_v: np.ndarray
    length: int                 # tokens fed so far

    def select(self, rows: torch.Tensor, cross: bool = False) -> "OnnxCache":
        r = rows.cpu().numpy()
        return replace(self, self_k=self.self_k[:, r], self_v=self.self_v[:, r], key_valid=self.key_valid[r],
                       cross_k=self.cross_k[:, r] if cross else self.cross_k,
                       cross_v=self.cross_v[:, r] if cross else self.cross_v)


class OnnxDecoder:
    def __init__(self, cross, step, meta: dict):
        self.cross, self.step_session = cross, step
        self.vocab_size = meta["vocab_size"]
        self.max_len = meta["decoder_max_len"]
        self.shape = (meta["decoder_layers"], meta["heads"], meta["decoder_max_len"], meta["d_head"])

    def init_cache(self, memory: torch.Tensor, memory_pos: torch.Tensor) -> OnnxCache:
        cross_k, cross_v = self.cross.run(None, {"memory": memory.numpy(), "memory_pos": memory_pos.numpy()})
        layers, heads, slots, d_head = self.shape
        n = memory.shape[0]
        zeros = np.zeros((layers, n, heads, slots, d_head), dtype=np.float32)
        return OnnxCache(zeros, zeros, np.zeros((n, slots), dtype=bool), cross_k, cross_v, 0)

    def step(self, tokens: torch.Tensor, cache: OnnxCache) -> tuple[torch.Tensor, OnnxCache]:
        if cache.length >= self.max_len:
            raise ValueError(f"caption length {cache.length + 1} exceeds decoder.max_len {self.max_len}")
        logprobs, k, v, valid = self.step_session.run(None, {
            "tokens": tokens.cpu().numpy().astype(np.int64), "step": np.array(cache.length, dtype=np.int64),
            "self_k": cache.self_k, "self_v": cache.self_v, "key_valid": cache.key_valid,
            "cross_k": cache.cross_k, "cross_v": cache.cross_v})
        return torch.from_numpy(logprobs), replace(cache, self_k=k, self_v=v, key_valid=valid,
                                                   length=cache.length + 1)


class OnnxCaptioner(CaptionerBase):
    def __init__(self, folder: str | os.PathLike, threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("running an ONNX export needs onnxruntime: pip install 'fsgr[export]'") from None
        from fsgr.config import Config, from_dict
        from fsgr.data.vocab import Vocab

        folder = Path(folder)
        self.meta, itos, self.codebook_names = read_metadata(folder, "onnx")     # checked against its manifest
        self.cfg = from_dict(Config, self.meta["config"])
        self.vocab = Vocab(itos, source=str(folder / "vocab.json"))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        sessions = [_session(ort, folder / n, options) for n in GRAPHS]
        self.encoder = sessions[0]
        self.decoder = OnnxDecoder(sessions[1], sessions[2], self.meta)
        self.device = torch.device("cpu")
        # what fsgr.models.decoding reads from a model
        self.model = SimpleNamespace(decoder=self.decoder, pad_id=self.meta["pad_id"], bos_id=self.meta["bos_id"],
                                     eos_id=self.meta["eos_id"])

    def encode(self, images: torch.Tensor, concept_map: bool = False) -> SimpleNamespace:
        """The graph always computes the map labels (concept_map only matters to the PyTorch Captioner's cost)."""
        memory, memory_pos, map_ids = self.encoder.run(None, {"images": images.float().cpu().numpy()})
        return SimpleNamespace(memory=torch.from_numpy(memory), memory_pos=torch.from_numpy(memory_pos),
                               map_ids=torch.from_numpy(map_ids))


def _session(ort, path: Path, options):
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors for a file it cannot run: name the file, one line
        raise CheckpointError(f"{path}: onnxruntime cannot load it ({' '.join(str(exc).split())[:200]})") from None
