"""A COCO-scale rehearsal of the data path, one JSON line.

Generates an M2-layout dataset with COCO's counts (m2_annotations: captions_{train,val}2014.json and
coco_{train,restval,dev,test}_ids.npy with 414,113 / 152,634 / 25,010 / 25,010 annotation ids; 113,287 / 5,000 /
5,000 images, 5 captions each and a few with 6, as COCO) whose images are tiny real JPEGs (hard links to a handful of
16x16 files) and whose captions are real-looking text: Flickr8k captions shipped in tests/real_data, de-tokenised and
spliced at a shared connective ("a dog runs in the park" + "two men sit on a bench" -> new sentences), so the
vocabulary and n-gram statistics look like human captions. Then measures:

- `check-data` (annotations, caption lengths, 123,287 image decodes over --workers processes);
- reading + tokenising + vocabulary: a first run (cold caption cache) and a second run (cache hit);
- per-epoch data set-up after the first: the training loader of a later epoch (dataset from the run's encoded
  captions, global-batch sampler) up to its first batch, XE and SCST; baseline, measured here: the same loader the way
  every epoch built it before (a CaptionDataset that tokenises the 566,747 captions again);
- the SCST reward's document frequencies (CiderDReward over the training captions: documents = captions, the
  reference, and = images);
- validation scoring of 5,000 predictions: tokenising the references (once per run now) and scoring one epoch's
  predictions, each of --metrics on its own (METEOR needs Java; it is reported unavailable without it).

The machine is shared: run it on a quiet one (the figures in docs/results.md say under which load they were taken).

Usage: python benchmarks/bench_coco_scale.py [--root DIR] [--workers 2] [--metrics bleu,meteor,rouge,cider]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FLICKR = REPO / "tests" / "real_data" / "flickr8k_captions_2000.txt.gz"

# M2 id files: part -> (json, images of that part, annotation ids)
PARTS = {"train": ("captions_train2014.json", 82783, 414113), "restval": ("captions_val2014.json", 30504, 152634),
         "dev": ("captions_val2014.json", 5000, 25010), "test": ("captions_val2014.json", 5000, 25010)}
CONNECTIVES = (" in ", " on ", " with ", " at ", " near ", " while ", " and ")


def detokenize(text: str) -> str:
    """Flickr8k's tokenised text -> how an annotator typed it ("A dog , running ." -> "A dog, running.")."""
    text = re.sub(r" ([.,!?;:])", r"\1", text.strip())
    text = re.sub(r" (n't|'s|'re|'ll|'ve|'m|'d)\b", r"\1", text)
    return text[:1].upper() + text[1:]


def caption_source(seed: int):
    lines = gzip.decompress(FLICKR.read_bytes()).decode("utf-8").splitlines()
    base = [detokenize(m.group(1)) for line in lines if (m := re.match(r"^\S+#\d+\s+(.*)$", line))]
    rng = random.Random(seed)

    def one() -> str:
        a = rng.choice(base)
        if rng.random() < 0.6:   # splice with another caption at a connective both hold
            b = rng.choice(base)
            for c in rng.sample(CONNECTIVES, len(CONNECTIVES)):
                if c in a and c in b:
                    return a.split(c, 1)[0] + c + b.split(c, 1)[1]
        return a

    return one


def generate(root: Path, seed: int = 0) -> Path:
    """The M2 layout under root: m2_annotations/ and train2014/, val2014/ (hard links to tiny JPEGs)."""
    ann = root / "m2_annotations"
    ann.mkdir(parents=True, exist_ok=True)
    tiny = []
    for k, colour in enumerate([(200, 40, 40), (40, 160, 60), (50, 70, 200), (220, 200, 40)]):
        path = root / f"tiny_{k}.jpg"
        Image.new("RGB", (16, 16), colour).save(path, quality=90)
        tiny.append(path)
    next_caption = caption_source(seed)
    jsons = {"captions_train2014.json": {"images": [], "annotations": []},
             "captions_val2014.json": {"images": [], "annotations": []}}
    image_id, ann_id = 1, 1
    for part, (json_name, n_images, n_captions) in PARTS.items():
        subdir = "train2014" if json_name == "captions_train2014.json" else "val2014"
        (root / subdir).mkdir(exist_ok=True)
        extra = n_captions - 5 * n_images          # COCO: a few images have 6 captions
        ids = []
        for i in range(n_images):
            name = f"COCO_{subdir}_{image_id:012d}.jpg"
            target = root / subdir / name
            if not target.exists():
                os.link(tiny[image_id % len(tiny)], target)
            jsons[json_name]["images"].append({"id": image_id, "file_name": name, "width": 16, "height": 16})
            for _ in range(5 + (1 if i < extra else 0)):
                jsons[json_name]["annotations"].append({"id": ann_id, "image_id": image_id,
                                                        "caption": next_caption()})
                ids.append(ann_id)
                ann_id += 1
            image_id += 1
        np.save(ann / f"coco_{part}_ids.npy", np.asarray(ids, dtype=np.int64))
    for name, data in jsons.items():
        (ann / name).write_text(json.dumps(data))
    return root


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="where to generate the dataset (default: a temporary folder)")
    parser.add_argument("--workers", type=int, default=2, help="check-data image-check processes")
    parser.add_argument("--metrics", default="bleu,meteor,rouge,cider", help="validation metrics to time")
    parser.add_argument("--keep", action="store_true", help="keep the generated dataset")
    args = parser.parse_args()

    from fsgr.config import load_config
    from fsgr.data.check import check_dataset
    from fsgr.data.datasets import CaptionDataset
    from fsgr.metrics.reward import CiderDReward
    from fsgr.training import setup
    from fsgr.core.distributed import DistInfo
    from fsgr.training.evaluation import TokenizedReferences, score_predictions

    import torch

    torch.set_num_threads(1)
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="fsgr_coco_scale_"))
    out: dict = {"bench": "coco_scale"}
    try:
        _, out["generate_seconds"] = timed(generate, root)
        cache = root / "cache"
        cfg = load_config(REPO / "configs" / "fsgr_coco.yaml",
                          [f"data.annotations={root / 'm2_annotations'}", f"data.images={root}",
                           f"data.cache_dir={cache}", "data.workers=0", "data.full_coco=require"])

        report, out["check_data_seconds"] = timed(check_dataset, cfg.data, workers=args.workers)
        out["check_data_problems"] = len(report.problems)
        out["check_data_image_seconds"] = report.image_seconds

        data, out["read_tokenise_vocab_seconds_first_run"] = timed(setup.build_data, cfg)
        again, out["read_tokenise_vocab_seconds_cached"] = timed(setup.build_data, cfg)
        assert all(w.from_cache for w in again.words.values()) and again.vocab == data.vocab
        train = data.split("train")
        out["counts"] = {s: len(data.split(s)) for s in ("train", "val", "test")}
        out["train_captions"] = sum(len(r.captions) for r in train)
        out["vocab_size"] = len(data.vocab)
        _, out["encode_train_seconds_once_per_run"] = timed(data.encoded, "train")

        def first_batch(scst: bool):
            loader = setup.train_loader(cfg, data, DistInfo(), epoch=1, start_step=0, scst=scst,
                                        generator=torch.Generator())
            return next(iter(loader))

        _, out["epoch_setup_seconds_xe"] = timed(first_batch, False)
        _, out["epoch_setup_seconds_scst"] = timed(first_batch, True)

        def old_epoch_setup():   # what every epoch did before: tokenise and encode the training captions again
            return CaptionDataset(train, data.vocab, max_len=cfg.data.max_len, batching=cfg.data.batching)

        _, out["baseline_epoch_setup_seconds"] = timed(old_epoch_setup)
        out["epoch_setup_speedup"] = out["baseline_epoch_setup_seconds"] / out["epoch_setup_seconds_xe"]

        refs = data.train_refs
        _, out["reward_df_seconds_captions"] = timed(CiderDReward, refs, documents="captions")
        _, out["reward_df_seconds_images"] = timed(CiderDReward, refs, documents="images")

        val = data.split("val")
        references, out["val_reference_tokenise_seconds_once_per_run"] = timed(TokenizedReferences, val)
        rng = random.Random(1)
        preds = {int(r.image_id): rng.choice(data.split("test")).captions[0] for r in val}
        out["val_scores"], out["val_unavailable"], out["val_scoring_seconds"] = {}, {}, {}
        for metric in args.metrics.split(","):   # one at a time: the Java ones cost much more
            scores, out["val_scoring_seconds"][metric] = timed(score_predictions, references, preds, metric,
                                                               tolerate_failures=True)
            out["val_scores"].update(scores)
            out["val_unavailable"].update(scores.unavailable)
        in_process = sum(v for k, v in out["val_scoring_seconds"].items() if k not in ("meteor", "spice"))
        out["epoch_data_overhead_seconds"] = (out["epoch_setup_seconds_xe"] + out["epoch_setup_seconds_scst"] +
                                              in_process)
    finally:
        if not args.keep and not args.root:
            shutil.rmtree(root, ignore_errors=True)
    out["cpus"] = os.cpu_count()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
