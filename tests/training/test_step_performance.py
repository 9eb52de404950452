"""The GPU-step properties, checked on the CPU: fused Adam, no host read inside an XE step, train.compile agrees with
eager. (Speed itself is measured in benchmarks/bench_train.py, never asserted here.)"""

from __future__ import annotations

import copy
import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fsgr
from fsgr.config import load_config
from fsgr.models.captioner import FSGRCaptioner
from fsgr.training import setup
from fsgr.training.engine import Trainer, compile_backbone_and_encoder, fused_adam_supported

FSGR_SOURCES = str(Path(fsgr.__file__).resolve().parent)   # the package itself, wherever the checkout is named

# ops that make the host wait for the device when their input lives on a GPU
HOST_READS = {"_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "unique", "_unique2",
              "unique_consecutive", "is_nonzero"}


class HostReadRecorder(TorchDispatchMode):
    """Records every host-read op with the fsgr function that issued it."""

    def __init__(self):
        super().__init__()
        self.callers: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_READS:
            frames = [f.name for f in traceback.extract_stack()
                      if str(Path(f.filename).resolve()).startswith(FSGR_SOURCES)]
            self.callers[frames[-1] if frames else "<torch>"] += 1
        return func(*args, **(kwargs or {}))


def _trainer(tmp_path, tiny_run_config, model=None, **train):
    cfg = tiny_run_config(tmp_path, train={"contrastive_weight": 0.25, **train}, model=model or {})
    trainer = Trainer(load_config(cfg), device="cpu", progress=False)
    trainer.setup_model()
    trainer.begin_phase("xe")
    return trainer


def _batches(trainer, n):
    loader = setup.train_loader(trainer.cfg, trainer.data, trainer.dist, epoch=0, start_step=0, scst=False,
                                generator=trainer.loader_generator)
    it = iter(loader)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("train", [{}, {"grad_accum": 2, "grad_clip": 1.0}])
def test_xe_step_reads_the_device_once_after_the_optimizer_step(tmp_path, tiny_run_config, train):
    trainer = _trainer(tmp_path, tiny_run_config, **train)
    micro = trainer.cfg.train.grad_accum
    batches = _batches(trainer, 2 * micro)
    trainer._xe_step(batches[:micro])                      # warm-up: optimiser state created
    recorder = HostReadRecorder()
    with recorder:
        values = trainer._xe_step(batches[micro:])
    assert values["loss"] > 0
    # allowed: counting target tokens on the host copy of the batch (before the transfer) and the one read of the
    # step's loss values after the optimiser step; anything else (an .item(), a bool() of a device tensor,
    # F.one_hot's range check, Adam reading a step count) would stall a GPU in the middle of the step
    assert set(recorder.callers) == {"num_targets", "_reduce_step_values"}, recorder.callers
    assert recorder.callers["_reduce_step_values"] == 1


def test_optimizer_is_fused_where_the_device_supports_it(tmp_path, tiny_run_config):
    trainer = _trainer(tmp_path, tiny_run_config, model={"dropout": 0.0})      # no dropout: both steps see one model
    assert fused_adam_supported(torch.device("cpu")) == ("cpu" in torch.utils._foreach_utils
                                                          ._get_fused_kernels_supported_devices())
    assert fused_adam_supported(torch.device("cuda"))
    assert all(g["fused"] == fused_adam_supported(trainer.device) for g in trainer.optimizer.param_groups)
    # fused and unfused Adam take the same step
    batch = _batches(trainer, 1)
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.schedule.apply(trainer.optimizer, 0)
    torch.manual_seed(0)                                  # the same Gumbel noise in both steps
    trainer._xe_step(batch)
    fused_after = copy.deepcopy(trainer.model.state_dict())
    trainer.model.load_state_dict(before)
    groups = [{k: v for k, v in g.items() if k != "fused"} for g in trainer.optimizer.param_groups]
    trainer.optimizer = torch.optim.Adam(groups, fused=False)
    assert not trainer.optimizer.param_groups[0]["fused"] and trainer.optimizer.param_groups[0]["lr"] > 0
    torch.manual_seed(0)
    trainer._xe_step(batch)
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(value, fused_after[name], atol=1e-6), name


def test_compiled_backbone_and_encoder_agree_with_eager(tmp_path, tiny_run_config):
    cfg = load_config(tiny_run_config(tmp_path, model={"dropout": 0.0}))
    torch.manual_seed(0)
    eager = FSGRCaptioner(cfg.model, vocab_size=40).train()
    compiled = copy.deepcopy(eager)
    compile_backbone_and_encoder(compiled)
    assert compiled.state_dict().keys() == eager.state_dict().keys()      # checkpoints unchanged
    images = torch.randn(3, 3, 32, 32)
    tokens = torch.randint(4, 40, (6, 9))
    tokens[:, 0] = 2
    image_index = torch.tensor([0, 0, 1, 1, 2, 2])
    outs = []
    for model in (eager, compiled):
        torch.manual_seed(1)                              # the semantic head's Gumbel noise (it stays eager)
        out = model(images, tokens, image_index)
        (out.logprobs.logsumexp(-1).mean() + out.logprobs[..., 5].mean() + out.contrast_feats.square().mean()
         ).backward()
        outs.append(out)
    assert torch.equal(outs[0].concept_ids, outs[1].concept_ids)
    assert torch.allclose(outs[0].logprobs, outs[1].logprobs, atol=1e-4)
    assert torch.allclose(outs[0].contrast_feats, outs[1].contrast_feats, atol=1e-4)
    grads = {n: p.grad for n, p in compiled.named_parameters() if p.grad is not None}
    assert grads and any(n.startswith("backbone.") for n in grads) and any(n.startswith("encoder.") for n in grads)
    for name, p in eager.named_parameters():
        if p.grad is not None:
            assert torch.allclose(p.grad, grads[name], atol=1e-4, rtol=1e-3), name
    # and the compiled modules really are compiled
    assert compiled.backbone._compiled_call_impl is not None and compiled.encoder._compiled_call_impl is not None
