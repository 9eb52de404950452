"""`fsgr score`: COCO caption metrics of a results file against a captions file, as the COCO toolkit scores them.

REFS is COCO captions format (`{"annotations": [{"image_id": ..., "caption": ...}, ...]}`; nocaps files, whose
"images" carry a "domain", are also scored per domain), PREDS is COCO results format (`[{"image_id": ...,
"caption": ...}, ...]`, one per image). Prints a table and the signature; `--json OUT` writes the scores (keys
BLEU-1..BLEU-4, METEOR, ROUGE-L, CIDEr, SPICE, CLIPScore, RefCLIPScore, CHAIR-i, CHAIR-s; a metric that cannot run
is absent and reported as unavailable), "signature", and "domains" / "diagnostics" when there are any.
Exit status 0, or 1 when a metric named in --metrics could not run. Bad input: one line naming the file and ids.
"""

from __future__ import annotations

import functools
import json
import sys
from collections import defaultdict
from pathlib import Path

from fsgr.errors import DataError, format_ids
from fsgr.files import atomic_write_text, existing_file, parse_json


def add_arguments(parser) -> None:
    parser.add_argument("--refs", required=True, metavar="REFS.json", help="references, COCO captions format")
    parser.add_argument("--preds", required=True, metavar="PREDS.json", help="predictions, COCO results format")
    add_metric_arguments(parser)
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the scores to this JSON file")
    parser.add_argument("--subset", action="store_true",
                        help="score only the images in PREDS (otherwise every image in REFS needs a prediction)")
    parser.add_argument("--diagnostics", action="store_true",
                        help="caption diagnostics: lengths, vocabulary, distinct-n, repetition, bad endings")


def add_metric_arguments(parser) -> None:
    """--metrics and what the extra metrics need (shared with `fsgr compare`)."""
    parser.add_argument("--metrics", default=None, metavar="LIST",
                        help="comma-separated subset of bleu,meteor,rouge,cider,spice (default: all) plus "
                             "clipscore,refclipscore (need --clip and --images) and chair (needs --instances)")
    parser.add_argument("--train-refs", default=None, metavar="TRAIN.json",
                        help="training captions (COCO captions format): diagnostics add the share copied verbatim")
    parser.add_argument("--clip", default=None, metavar="CLIP.pt", help="OpenAI-format CLIP for CLIPScore "
                                                                        "(the paper's standard is ViT-B-32.pt)")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="image folder for CLIPScore (files named by image id or COCO/nocaps file name)")
    parser.add_argument("--instances", default=None, metavar="INSTANCES.json",
                        help="COCO instance annotations for CHAIR (instances_val2014.json)")
    parser.add_argument("--device", default=None, help="device for CLIPScore (cpu, cuda, ...; default: CUDA if any)")


def _load(path: str):
    stat = existing_file(path, "a JSON file", DataError, "no such file").stat()
    return _load_once(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)  # read_refs and read_domains read the same file: parse it once
def _load_once(path: str, mtime_ns: int, size: int):
    try:
        return parse_json(Path(path).read_bytes())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be captions") from None


def _image_id(path: str, entry: dict, where: str, k: int) -> object:
    image_id = entry["image_id"]
    if type(image_id) is not int and type(image_id) is not str:  # (JSON true/false are no ids)
        raise DataError(f"{path}: {where} #{k}: image_id must be an integer or a string, got {image_id!r}")
    return image_id


def read_refs(path: str) -> dict:
    data = _load(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not COCO captions format (expected an object with an 'annotations' list)")
    refs = _grouped_captions(data["annotations"])
    return refs if refs else _checked_refs(path, data["annotations"])


def _grouped_captions(annotations: list) -> dict | None:
    """image id -> captions, when every annotation is a dict with an integer or string image id and a non-empty
    caption string (checked a column at a time: the usual file); None otherwise, for `_checked_refs` to say why."""
    try:
        ids = [ann["image_id"] for ann in annotations]
        captions = [ann["caption"] for ann in annotations]
    except (KeyError, TypeError):  # (not a dict, or a field missing)
        return None
    if not {int, str}.issuperset(map(type, ids)) or set(map(type, captions)) != {str} or \
            not all(map(str.strip, captions)):
        return None
    refs: defaultdict = defaultdict(list)
    for image_id, caption in zip(ids, captions):
        refs[image_id].append(caption)
    return dict(refs)


def _checked_refs(path: str, annotations: list) -> dict:
    """The captions of each image, annotation by annotation, or a DataError naming what is wrong and where."""
    refs: dict = {}
    missing, empty, not_text = [], [], []
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            missing.append(ann.get("image_id", f"#{k}") if isinstance(ann, dict) else f"#{k}")
            continue
        image_id = _image_id(path, ann, "annotation", k)
        caption = ann["caption"]
        if type(caption) is not str:
            not_text.append(image_id)
        elif not caption.strip():
            empty.append(image_id)
        refs.setdefault(image_id, []).append(caption)
    if missing:
        raise DataError(f"{path}: annotations without 'image_id' and 'caption' fields: {format_ids(missing)}")
    if not_text:
        raise DataError(f"{path}: reference captions that are not strings (numbers, null, lists) for images "
                        f"{format_ids(dict.fromkeys(not_text))}")
    if empty:
        raise DataError(f"{path}: empty reference captions for images {format_ids(dict.fromkeys(empty))}")
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
        image_id = _image_id(path, entry, "entry", k)
        if image_id in preds:
            repeated.append(image_id)
        if type(entry["caption"]) is not str:
            not_text.append(image_id)
        preds[image_id] = entry["caption"]
    if missing:
        raise DataError(f"{path}: entries without 'image_id' and 'caption' fields: {format_ids(missing)}")
    if repeated:
        raise DataError(f"{path}: images predicted more than once: {format_ids(dict.fromkeys(repeated))}")
    if not_text:
        raise DataError(f"{path}: captions that are not strings for images {format_ids(not_text)}")
    if not preds:
        raise DataError(f"{path}: no predictions")
    return preds


DOMAINS = ("in-domain", "near-domain", "out-domain")


def read_domains(path: str) -> dict | None:
    """nocaps layout: image id -> domain ("in-domain", "near-domain", "out-domain") from the "images" entries of
    a captions file; None for a file without domains (COCO)."""
    data = _load(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not any(isinstance(im, dict) and "domain" in im for im in images):
        return None
    domains, bad = {}, []
    for k, im in enumerate(images):
        domain = im.get("domain") if isinstance(im, dict) else None
        if domain not in DOMAINS or "id" not in im:
            bad.append(im.get("id", f"#{k}") if isinstance(im, dict) else f"#{k}")
            continue
        domains[im["id"]] = domain
    if bad:
        raise DataError(f"{path}: nocaps images without an 'id' and a domain among {', '.join(DOMAINS)}: {format_ids(bad)}")
    return domains


def read_file_names(path: str) -> dict:
    """image id -> file name, from the "images" entries of a captions file (COCO, nocaps); {} when none."""
    data = _load(path)
    images = data.get("images") if isinstance(data, dict) else None
    return {im["id"]: im["file_name"] for im in images or []
            if isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str)}


def score_file(refs: dict, preds: dict, names: list[str], extra_metrics=(), domains: dict | None = None) -> dict:
    """{"overall": ScoredSystem, "domains": {domain: Scores}} with each nocaps domain scored as its own corpus."""
    from fsgr.metrics.compare import score_system
    from fsgr.metrics.score import tokenize_refs

    image_ids, ref_tok = tokenize_refs(refs)
    overall = score_system(image_ids, ref_tok, preds, names, extra_metrics)
    per_domain = score_domains(refs, {"": preds}, names, extra_metrics, domains) if domains is not None else {}
    return {"overall": overall, "domains": {domain: by_system[""] for domain, by_system in per_domain.items()}}


def score_domains(refs: dict, systems: dict[str, dict], names: list[str], extra_metrics, domains: dict) -> dict:
    """domain -> system -> Scores: each nocaps domain scored as its own corpus (as the nocaps evaluation does), its
    references tokenised once for all the systems."""
    from fsgr.metrics.compare import score_system
    from fsgr.metrics.score import tokenize_refs

    missing = [i for i in refs if i not in domains]
    if missing:
        raise DataError(f"images of the references without a nocaps domain: {format_ids(missing)}")
    out = {}
    for domain in DOMAINS:
        sub = {i: refs[i] for i in refs if domains[i] == domain}
        if sub:
            image_ids, ref_tok = tokenize_refs(sub)
            out[domain] = {label: score_system(image_ids, ref_tok, preds, names, extra_metrics).scores
                           for label, preds in systems.items()}
    return out


def print_table(columns: dict[str, dict], keys: list[str]) -> None:
    """One row per metric key, one column per system (or domain); "unavailable" where a value is missing."""
    width = max([len(k) for k in keys] + [6])
    names = list(columns)
    col = max([len(n) for n in names] + [8])
    if len(names) > 1:
        print(f"{'':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names))
    for key in keys:
        cells = [f"{columns[n][key]:.4f}" if key in columns[n] else "unavailable" for n in names]
        if len(names) == 1:
            print(f"{key:<{width}}  {cells[0]}")
        else:
            print(f"{key:<{width}}  " + "  ".join(f"{c:>{col}}" for c in cells))


def print_unavailable(unavailable: dict[str, str], verb: str) -> None:
    # each distinct reason once (no Java makes both METEOR and SPICE unavailable for the same reason)
    reasons: dict[str, list[str]] = {}
    for key, why in unavailable.items():
        reasons.setdefault(why, []).append(key)
    for why, keys in reasons.items():
        print(f"fsgr {verb}: {' and '.join(keys)} unavailable: {why}", file=sys.stderr)


def print_diagnostics(diagnostics: dict[str, dict]) -> None:
    rows = [("captions", "{:d}"), ("mean_length", "{:.2f}"), ("median_length", "{:.1f}"), ("vocabulary", "{:d}"),
            ("distinct_1", "{:.4f}"), ("distinct_2", "{:.4f}"), ("repeated_ngram_share", "{:.4f}"),
            ("function_word_ending_share", "{:.4f}"), ("copied_from_training_share", "{:.4f}")]
    names = list(diagnostics)
    print("\ndiagnostics" + ("" if len(names) == 1 else "  " + "  ".join(f"{n:>12}" for n in names)))
    for key, fmt in rows:
        if key in diagnostics[names[0]]:
            print(f"  {key:<28}" + "  ".join(f"{fmt.format(diagnostics[n][key]):>12}" for n in names))
    for n in names:
        hist = " ".join(f"{k}:{v}" for k, v in diagnostics[n]["length_histogram"].items())
        print(f"  length histogram{'' if len(names) == 1 else ' ' + n}: {hist}")


def write_json(path: str, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def result_keys(names: list[str], extra_metrics) -> list[str]:
    from fsgr.metrics.score import ALL_METRICS, METRIC_KEYS

    # the toolkit's metrics in their usual order (as the JSON has them), then the extra ones as asked
    return [k for name in ALL_METRICS if name in names for k in METRIC_KEYS[name]] + \
        [k for m in extra_metrics for k in m.keys]


def main(args) -> int:
    from fsgr.evaluation.extras import build_extra_metrics, split_metrics
    from fsgr.metrics.signature import signature

    from fsgr.commands.checks import output_file

    names, extra_names = split_metrics(args.metrics)
    output_file("--json", args.json, inputs=[args.refs, args.preds])
    refs = read_refs(args.refs)
    preds = read_preds(args.preds)
    no_refs = [i for i in preds if i not in refs]
    ref_types, pred_types = {type(i) for i in refs}, {type(i) for i in preds}
    if no_refs and ref_types.isdisjoint(pred_types):
        kind = {int: "integers", str: "strings"}
        raise DataError(f"{args.preds}: image ids are {' and '.join(kind[t] for t in pred_types)} here but "
                        f"{' and '.join(kind[t] for t in ref_types)} in {args.refs}: the types differ "
                        f"(e.g. {format_ids(no_refs[:3])})")
    if no_refs:
        raise DataError(f"{args.preds}: predictions for images without references in {args.refs}: {format_ids(no_refs)}")
    if args.subset:
        refs = {i: refs[i] for i in preds}
    else:
        no_preds = [i for i in refs if i not in preds]
        if no_preds:
            raise DataError(f"{args.preds}: no prediction for images of {args.refs}: {format_ids(no_preds)} "
                            "(use --subset to score only the predicted images)")
    extra_metrics = build_extra_metrics(extra_names, args, refs, read_file_names(args.refs))
    scored = score_file(refs, preds, names, extra_metrics, read_domains(args.refs))
    result = scored["overall"].scores
    sig = signature(refs, preds, names + extra_names)

    print(f"{len(preds)} images, {sum(len(r) for r in refs.values())} references")
    keys = result_keys(names, extra_metrics)
    print_table({"overall": result, **scored["domains"]}, keys)
    print(f"signature: {sig}")
    print_unavailable(result.unavailable, "score")
    out = {**result, "signature": sig}
    if scored["domains"]:
        out["domains"] = {d: dict(s) for d, s in scored["domains"].items()}
    if args.diagnostics or args.train_refs:
        from fsgr.metrics.diagnostics import caption_diagnostics
        from fsgr.metrics.tokenizer import ptb_tokenize

        train = None
        if args.train_refs:
            train = set(ptb_tokenize([c for caps in read_refs(args.train_refs).values() for c in caps]))
        out["diagnostics"] = caption_diagnostics(scored["overall"].tokens, train)
        print_diagnostics({"": out["diagnostics"]})
    if args.json:
        write_json(args.json, out)
    explicit = args.metrics is not None
    return 1 if explicit and result.unavailable else 0
