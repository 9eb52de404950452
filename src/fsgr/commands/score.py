"""`fsgr score`: COCO caption metrics of a results file against a captions file, as the COCO toolkit scores them.

REFS is COCO captions format (`{"annotations": [{"image_id": ..., "caption": ...}, ...]}`; nocaps files, whose
"images" carry a "domain", are also scored per domain), PREDS is COCO results format (`[{"image_id": ...,
"caption": ...}, ...]`, one per image). Prints a table and the signature; `--json OUT` writes the scores (keys
BLEU-1..BLEU-4, METEOR, ROUGE-L, CIDEr, SPICE, CLIPScore, RefCLIPScore, CHAIR-i, CHAIR-s; a metric that cannot run
is absent and reported as unavailable), "signature", and "domains" / "diagnostics" when there are any.
Exit status 0; 1 when a metric named in --metrics could not run, when a metric crashed while running (the others are
still printed and written) or when --json could not be written after the table was printed; 2 for input refused
before any scoring (one line naming the file and ids).
"""

from __future__ import annotations


from fsgr.commands.metric_args import add_metric_arguments


def add_arguments(parser) -> None:
    parser.add_argument("--refs", required=True, metavar="REFS.json", help="references, COCO captions format")
    parser.add_argument("--preds", required=True, metavar="PREDS.json", help="predictions, COCO results format")
    add_metric_arguments(parser)
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the scores to this JSON file")
    parser.add_argument("--subset", action="store_true",
                        help="score only the images in PREDS (otherwise every image in REFS needs a prediction)")
    parser.add_argument("--diagnostics", action="store_true",
                        help="caption diagnostics: lengths, vocabulary, distinct-n, repetition, bad endings")


def main(args) -> int:
    from fsgr.commands.checks import output_file
    from fsgr.evaluation import coco_files, scoring
    from fsgr.evaluation.extras import build_extra_metrics, split_metrics
    from fsgr.metrics.signature import signature

    names, extra_names = split_metrics(args.metrics)
    output_file("--json", args.json, inputs=[args.refs, args.preds], verb="score", kind="signed-json")
    refs = coco_files.read_refs(args.refs)
    preds = coco_files.read_preds(args.preds)
    refs = coco_files.matched_refs(refs, preds, args.refs, args.preds, args.subset)
    domains = coco_files.read_domains(args.refs)
    train_refs = coco_files.read_refs(args.train_refs) if args.train_refs else None
    extra_metrics = build_extra_metrics(extra_names, args, refs, coco_files.read_file_names(args.refs))
    scored = scoring.score_file(refs, preds, names, extra_metrics, domains, tolerate_failures=True)
    result = scored["overall"].scores
    sig = signature(refs, preds, names + extra_names)

    print(f"{len(preds)} images, {sum(len(r) for r in refs.values())} references")
    print(scoring.table({"overall": result, **scored["domains"]}, scoring.result_keys(names, extra_metrics)))
    print(f"signature: {sig}")
    for line in scoring.unavailable_lines(result.unavailable, "score"):
        from fsgr.logs import get_logger   # (only when a metric is unavailable: `logging` costs a plain score)

        get_logger(__name__).warning(line)
    out = {**result, "signature": sig}
    if scored["domains"]:
        out["domains"] = {d: dict(s) for d, s in scored["domains"].items()}
    if args.diagnostics or train_refs is not None:
        from fsgr.metrics.diagnostics import caption_diagnostics
        from fsgr.metrics.tokenizer import ptb_tokenize

        train = None if train_refs is None else set(ptb_tokenize([c for caps in train_refs.values() for c in caps]))
        out["diagnostics"] = caption_diagnostics(scored["overall"].tokens, train)
        print(scoring.diagnostics_table({"": out["diagnostics"]}))
    if args.json:
        coco_files.write_json(args.json, out)
    explicit = args.metrics is not None
    return 1 if (explicit and result.unavailable) or scoring.failed(result.unavailable) else 0
