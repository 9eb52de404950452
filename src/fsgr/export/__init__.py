"""Exports of a trained checkpoint: ONNX graphs run on onnxruntime (`onnx`, `runtime`) and a Hub-style safetensors
folder (`hub`) that `fsgr.Captioner.from_pretrained` loads (`pip install fsgr[export]`)."""

from __future__ import annotations

# Deferred imports: onnx, onnxruntime and safetensors are the optional extra fsgr[export]; the runner imports the
# config and captioner only when it loads a model.

import json
import os
from pathlib import Path


def load_exported(folder: str | os.PathLike, device=None):
    """An exported folder -> a captioner: OnnxCaptioner for `--format onnx`, Captioner for `--format safetensors`."""
    from fsgr.errors import CheckpointError

    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: no config.json (not a folder written by `fsgr export`)")
    fmt = json.loads(config.read_text()).get("format")
    if fmt == "onnx":
        from fsgr.export.runtime import OnnxCaptioner

        if device not in (None, "cpu"):
            raise CheckpointError(f"--device {device}: ONNX exports run on onnxruntime's CPU provider here")
        return OnnxCaptioner(folder)
    if fmt == "safetensors":
        from fsgr.inference import Captioner

        return Captioner.from_pretrained(folder, device=device)
    raise CheckpointError(f"{config}: unknown export format {fmt!r} (expected onnx or safetensors)")
