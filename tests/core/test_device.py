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


def test_bare_cuda_device_gets_this_process_index(monkeypatch):
    # `--device cuda` reached torch.cuda.set_device without an index and failed on GPUs; no GPU is needed to check
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda", 1) == torch.device("cuda", 1)
    assert pick_device("cuda:0", 1) == torch.device("cuda", 0)
    assert pick_device("cpu", 1) == torch.device("cpu")
    with pytest.raises(ConfigError, match="there are 2 CUDA device"):
        pick_device("cuda:2", 0)


@pytest.mark.parametrize("requested, words", [("banana", "not a device"), ("cuda", "CUDA is not available"),
                                              ("cuda:1", "CUDA is not available"), ("meta", "meta")])
def test_unusable_devices_are_refused_by_name(monkeypatch, requested, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=words):
        pick_device(requested, 0)


def test_autocast_is_a_no_op_in_fp32_and_casts_otherwise():
    x = torch.ones(2, 2)
    with autocast(torch.device("cpu"), None):
        assert (x @ x).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16


def test_decoding_precision_is_the_trainers_by_default(monkeypatch):
    from fsgr.commands.decoding_args import PRECISIONS as FLAG_CHOICES
    from fsgr.core.device import PRECISIONS, decoding_precision, precision_name

    assert FLAG_CHOICES == PRECISIONS                      # the flags' choices (no torch import for --help)
    cpu = torch.device("cpu")
    assert decoding_precision(None, "auto", cpu) is None and decoding_precision("train", "off", cpu) is None
    assert decoding_precision("train", "bf16", cpu) is torch.bfloat16      # the run's recorded bf16 (CPU autocast)
    assert decoding_precision("fp16", "off", cpu) is torch.float16 and decoding_precision("fp32", "bf16", cpu) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert decoding_precision("train", "auto", torch.device("cuda", 0)) is torch.bfloat16   # as the trainer's
    assert [precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ConfigError, match="precision 'int8'"):
        decoding_precision("int8", "auto", cpu)
