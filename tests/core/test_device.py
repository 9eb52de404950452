"""Device choice and mixed precision: one rule for training, evaluation and serving."""

import pytest
import torch

from fsgr.core.device import autocast, pick_device, resolve_amp
from fsgr.errors import ConfigError


def test_amp_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None and resolve_amp("off", cpu) is None
    with pytest.raises(ConfigError, match="train.amp=bf16"):
        resolve_amp("bf16", cpu)
    assert resolve_amp("fp16", torch.device("cuda")) is torch.float16


def test_bare_cuda_device_gets_this_process_index():
    # `--device cuda` reached torch.cuda.set_device without an index and failed on GPUs; no GPU is needed to check
    assert pick_device("cuda", 1) == torch.device("cuda", 1)
    assert pick_device("cuda:0", 1) == torch.device("cuda", 0)
    assert pick_device("cpu", 1) == torch.device("cpu")


def test_autocast_is_a_no_op_in_fp32_and_casts_otherwise():
    x = torch.ones(2, 2)
    with autocast(torch.device("cpu"), None):
        assert (x @ x).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
