"""Exports of a trained checkpoint: ONNX graphs run on onnxruntime (`onnx`, `runtime`) and a Hub-style safetensors
folder (`fsgr.Captioner.save_pretrained`) that `fsgr.Captioner.from_pretrained` loads (`pip install fsgr[export]`).
The folder format and its manifest: fsgr.core.export_folder."""

from __future__ import annotations

# Deferred imports: onnx, onnxruntime and safetensors are the optional extra fsgr[export]; the runner loads only the
# format a folder holds.

import os
from pathlib import Path

from fsgr.core.export_folder import export_format
from fsgr.errors import CheckpointError, ConfigError


def load_exported(folder: str | os.PathLike, device=None, precision=None):
    """An exported folder -> a captioner: OnnxCaptioner for `--format onnx` (fp32 graphs), Captioner for
    `--format safetensors` (in `precision`, fsgr.core.device.decoding_precision). Every file is checked against the
    folder's manifest first (CheckpointError naming a damaged one)."""
    folder = Path(folder)
    if export_format(folder) == "onnx":
        from fsgr.export.runtime import OnnxCaptioner

        if device not in (None, "cpu"):
            raise CheckpointError(f"--device {device}: ONNX exports run on onnxruntime's CPU provider here")
        if precision not in (None, "train", "fp32"):
            raise ConfigError(f"--precision {precision}: an ONNX export's graphs compute in fp32")
        return OnnxCaptioner(folder)
    from fsgr.inference import Captioner

    return Captioner.from_pretrained(folder, device=device, precision=precision)
