"""`fsgr score`: COCO caption metrics of a results file against a captions file, as the COCO toolkit scores them.

REFS is COCO captions format (`{"annotations": [{"image_id": ..., "caption": ...}, ...]}`), PREDS is COCO results
format (`[{"image_id": ..., "caption": ...}, ...]`, one per image). Prints a table; `--json OUT` writes the scores
(keys BLEU-1..BLEU-4, METEOR, ROUGE-L, CIDEr, SPICE; a metric that cannot run is absent and reported as unavailable).
Exit status 0, or 1 when a metric named in --metrics could not run. Bad input: one line naming the file and ids.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fsgr.errors import DataError


def add_arguments(parser) -> None:
    parser.add_argument("--refs", required=True, metavar="REFS.json", help="references, COCO captions format")
    parser.add_argument("--preds", required=True, metavar="PREDS.json", help="predictions, COCO results format")
    parser.add_argument("--metrics", default=None, metavar="LIST",
                        help="comma-separated subset of bleu,meteor,rouge,cider,spice (default: all)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the scores to this JSON file")
    parser.add_argument("--subset", action="store_true",
                        help="score only the images in PREDS (otherwise every image in REFS needs a prediction)")


def _load(path: str):
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{path}: is a directory, not a JSON file")
    if not p.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be captions") from None


def _ids(ids) -> str:
    ids = list(ids)
    shown = ", ".join(repr(i) for i in ids[:10])
    return shown + (f" (and {len(ids) - 10} more)" if len(ids) > 10 else "")


def _image_id(path: str, where: str, entry) -> object:
    image_id = entry["image_id"]
    if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
        raise DataError(f"{path}: {where}: image_id must be an integer or a string, got {image_id!r}")
    return image_id


def read_refs(path: str) -> dict:
    data = _load(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not COCO captions format (expected an object with an 'annotations' list)")
    refs: dict = {}
    missing, empty, not_text = [], [], []
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            missing.append(ann.get("image_id", f"#{k}") if isinstance(ann, dict) else f"#{k}")
            continue
        image_id = _image_id(path, f"annotation #{k}", ann)
        caption = ann["caption"]
        if not isinstance(caption, str):
            not_text.append(image_id)
        elif not caption.strip():
            empty.append(image_id)
        refs.setdefault(image_id, []).append(caption)
    if missing:
        raise DataError(f"{path}: annotations without 'image_id' and 'caption' fields: {_ids(missing)}")
    if not_text:
        raise DataError(f"{path}: reference captions that are not strings (numbers, null, lists) for images "
                        f"{_ids(dict.fromkeys(not_text))}")
    if empty:
        raise DataError(f"{path}: empty reference captions for images {_ids(dict.fromkeys(empty))}")
    if not refs:
        raise DataError(f"{path}: no annotations")
    return refs


def read_preds(path: str) -> dict:
    data = _load(path)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]  # tolerate a results list wrapped like a captions file
    if not isinstance(data, list):
        raise DataError(f"{path}: not COCO results format (expected a list of {{'image_id', 'caption'}})")
    preds: dict = {}
    missing, repeated, not_text = [], [], []
    for k, entry in enumerate(data):
        if not isinstance(entry, dict) or "image_id" not in entry or "caption" not in entry:
            missing.append(entry.get("image_id", f"#{k}") if isinstance(entry, dict) else f"#{k}")
            continue
        image_id = _image_id(path, f"entry #{k}", entry)
        if image_id in preds:
            repeated.append(image_id)
        if not isinstance(entry["caption"], str):
            not_text.append(image_id)
        preds[image_id] = entry["caption"]
    if missing:
        raise DataError(f"{path}: entries without 'image_id' and 'caption' fields: {_ids(missing)}")
    if repeated:
        raise DataError(f"{path}: images predicted more than once: {_ids(dict.fromkeys(repeated))}")
    if not_text:
        raise DataError(f"{path}: captions that are not strings for images {_ids(not_text)}")
    if not preds:
        raise DataError(f"{path}: no predictions")
    return preds


def main(args) -> int:
    from fsgr.metrics.score import ALL_METRICS, METRIC_KEYS, parse_metrics, score

    from fsgr.commands.checks import output_file

    names = parse_metrics(args.metrics)
    output_file("--json", args.json, inputs=[args.refs, args.preds])
    refs = read_refs(args.refs)
    preds = read_preds(args.preds)
    no_refs = [i for i in preds if i not in refs]
    ref_types, pred_types = {type(i) for i in refs}, {type(i) for i in preds}
    if no_refs and ref_types.isdisjoint(pred_types):
        kind = {int: "integers", str: "strings"}
        raise DataError(f"{args.preds}: image ids are {' and '.join(kind[t] for t in pred_types)} here but "
                        f"{' and '.join(kind[t] for t in ref_types)} in {args.refs}: the types differ "
                        f"(e.g. {_ids(no_refs[:3])})")
    if no_refs:
        raise DataError(f"{args.preds}: predictions for images without references in {args.refs}: {_ids(no_refs)}")
    if args.subset:
        refs = {i: refs[i] for i in preds}
    else:
        no_preds = [i for i in refs if i not in preds]
        if no_preds:
            raise DataError(f"{args.preds}: no prediction for images of {args.refs}: {_ids(no_preds)} "
                            "(use --subset to score only the predicted images)")
    result = score(refs, preds, names)

    print(f"{len(preds)} images, {sum(len(r) for r in refs.values())} references")
    width = max(len(k) for keys in METRIC_KEYS.values() for k in keys)
    for name in ALL_METRICS:
        if name not in names:
            continue
        for key in METRIC_KEYS[name]:
            if key in result:
                print(f"{key:<{width}}  {result[key]:.4f}")
            else:
                print(f"{key:<{width}}  unavailable")
    # each distinct reason once (no Java makes both METEOR and SPICE unavailable for the same reason)
    reasons: dict[str, list[str]] = {}
    for key, why in result.unavailable.items():
        reasons.setdefault(why, []).append(key)
    for why, keys in reasons.items():
        print(f"fsgr score: {' and '.join(keys)} unavailable: {why}", file=sys.stderr)
    if args.json:
        from fsgr.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(dict(result), indent=2) + "\n")
    explicit = args.metrics is not None
    return 1 if explicit and result.unavailable else 0
