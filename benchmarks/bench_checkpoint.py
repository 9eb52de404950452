"""What the checkpoint checksum costs, against the save and load it rides on, measured in the same process.

Prints one JSON line: seconds to torch.save a state of --mb megabytes of fp32 tensors (the baseline), to save it
through `atomic_save` (checksum + atomic write), to torch.load it with weights_only=True (baseline), and to
`load_checkpoint` it (load + checksum check), and the checksum's own rate in MB/s.

    python benchmarks/bench_checkpoint.py [--mb 600] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    from fsgr.config import Config, to_dict
    from fsgr.core.checkpoint import atomic_save, load_checkpoint, payload_checksum

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=600, help="state size (ViT-B/16 CLIP alone is ~600 MB in fp32)")
    ap.add_argument("--dir", default=None, help="folder for the files (default: a temporary folder)")
    args = ap.parse_args()
    per = 4 * 1024 * 1024                                  # 4 MB tensors, like a transformer's weight matrices
    payload = {"format_version": 2, "config": to_dict(Config()), "vocab_itos": ["<unk>"],
               "model": {f"w{i}": torch.randn(per // 4) for i in range(max(1, args.mb // 4))}}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        plain, ours = Path(tmp) / "plain.pt", Path(tmp) / "ours.pt"
        save_plain = _seconds(lambda: torch.save(payload, plain))
        save_ours = _seconds(lambda: atomic_save(payload, ours))
        load_plain = _seconds(lambda: torch.load(plain, weights_only=True))
        load_ours = _seconds(lambda: load_checkpoint(ours))
        checksum = _seconds(lambda: payload_checksum(payload))
        size_mb = ours.stat().st_size / 1e6
    print(json.dumps({"bench": "checkpoint", "mb": round(size_mb, 1), "torch_save_s": round(save_plain, 3),
                      "atomic_save_s": round(save_ours, 3), "torch_load_s": round(load_plain, 3),
                      "load_checkpoint_s": round(load_ours, 3), "checksum_s": round(checksum, 3),
                      "checksum_mb_per_s": round(size_mb / checksum, 1),
                      "save_overhead": round(save_ours / save_plain, 2), "load_overhead": round(load_ours / load_plain, 2),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
