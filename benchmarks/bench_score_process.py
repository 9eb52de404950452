"""`fsgr score` as a whole process against pycocoevalcap's whole process, and `fsgr compare`'s bootstrap; prints
ONE JSON line.

All Flickr8k images (../shared/data/Flickr8k.token.txt, 8,092 images; `--images N` for fewer, at least 5,000 for the
issue's target): the first caption of each image held out as the prediction, the other four as references, written
as COCO captions / results JSON files, in one of four shapes of text (`--text`, each reported in its own line):

- `flickr-detok`: captions turned back into raw-looking text ("A girl going into a wooden building.");
- `flickr-tokenised`: the file's own PTB-tokenised form ("A girl going into a wooden building .");
- `raw`: human captions as COCO has them, built deterministically from the detokenised ones (`raw_captions`): some
  lower-case starts, missing or spaced final periods, double spaces, exclamation marks, quotes, parentheses,
  numbers and fractions ("22 3/4", which the PTB tokenizer joins with U+00A0), accented words (café, jalapeño, São
  Paulo) and curly apostrophes;
- `lowercase-model`: references as in `raw`, predictions as a captioning model writes them: lower-case PTB tokens
  without punctuation ("a girl going into a wooden building").

Each side is a fresh
Python process from start-up to the scores (JSON, tokenisation, BLEU, ROUGE-L, CIDEr):

- pycocoevalcap 1.2: read the two JSON files, `PTBTokenizer` (the Stanford jar), `Bleu(4)`, `Rouge()`, `Cider()`,
  the way its `COCOEvalCap.evaluate` runs them (without METEOR and SPICE);
- ours: `python -m fsgr score --refs R --preds P --metrics bleu,rouge,cider` (`--no-compiled`: with the C extension
  blocked, the numpy/Python paths; `speedups_compiled` in the line says which ran).

The two alternate `--runs` times, ours right after the toolkit's each time (the machine is shared and its speed
drifts: the minimum of each side is reported, the ratio of the minima, of the medians, and the median of the ratios
of each such pair, which cancels the drift slower than a pair; and every run).
Both sides run byte-compiled, as pip installs a package: pycocoevalcap's modules were compiled at its install, and
fsgr's are compiled here first (an editable checkout under PYTHONDONTWRITEBYTECODE=1, as on the development machine,
would otherwise recompile its ~40 modules from source in every process: ~70 ms).
Then `compare_systems` on two systems over the same images with 1,000 bootstrap samples, in process.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_metrics  # noqa: E402

DATA = bench_metrics.DATA

BASELINE = """
import json, sys
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
refs = json.load(open(sys.argv[1], encoding="utf-8"))
preds = json.load(open(sys.argv[2], encoding="utf-8"))
gts, res = {}, {}
for a in refs["annotations"]:
    gts.setdefault(a["image_id"], []).append({"caption": a["caption"]})
for p in preds:
    res[p["image_id"]] = [{"caption": p["caption"]}]
tok = PTBTokenizer()
gts, res = tok.tokenize(gts), tok.tokenize(res)
out = {}
for scorer, names in ((Bleu(4), ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"]), (Rouge(), ["ROUGE-L"]), (Cider(), ["CIDEr"])):
    value, _ = scorer.compute_score(gts, res) if not isinstance(scorer, Bleu) else scorer.compute_score(gts, res, verbose=0)
    out.update(zip(names, value if isinstance(value, list) else [value]))
print(json.dumps(out))
"""


TEXT_SHAPES = ("flickr-detok", "flickr-tokenised", "raw", "lowercase-model")
_RAW_PHRASES = (" near a caf\u00e9", " with a jalape\u00f1o", " in S\u00e3o Paulo", " about 22 3/4 inches tall",
                " with 2 1/2 slices", " on a na\u00efve painting", " beside the man\u2019s bike", " (outside)",
                ' with a "stop" sign', " in 2010")


def raw_captions(captions: list[str], seed: int) -> list[str]:
    """Detokenised captions given the variety of COCO's raw ones, the same for a seed."""
    rng = random.Random(seed)
    out = []
    for c in captions:
        body, period = (c[:-1], ".") if c.endswith(".") else (c, "")
        r = rng.random()
        if r < 0.03:
            body += rng.choice(_RAW_PHRASES)
        elif r < 0.07:
            body = body.replace(" ", "  ", 1)
        elif r < 0.10:
            body = body.replace(" ", ", ", 1)
        r = rng.random()
        if r < 0.25:
            period = ""
        elif r < 0.30:
            period = " ."
        elif r < 0.33:
            period = "!"
        if rng.random() < 0.10:
            body = body[:1].lower() + body[1:]
        out.append(body + period)
    return out


def load(text: str, n_images: int) -> tuple[dict, dict]:
    """(references per image, prediction per image) in the shape `text` (see the module's docstring)."""
    if text == "flickr-tokenised":
        caps: dict[str, list[str]] = {}
        for line in DATA.read_text(encoding="utf-8").splitlines():
            name, _, caption = line.partition("\t")
            if caption:
                caps.setdefault(name.split("#")[0], []).append(caption.strip())
        names = list(caps)[:n_images]
        return {n: caps[n][1:] for n in names}, {n: caps[n][0] for n in names}
    refs, preds = bench_metrics.load(n_images)
    if text == "flickr-detok":
        return refs, preds
    names = list(refs)
    flat = raw_captions([c for n in names for c in refs[n]], seed=0)
    raw_refs, k = {}, 0
    for n in names:
        raw_refs[n] = flat[k:k + len(refs[n])]
        k += len(refs[n])
    if text == "raw":
        return raw_refs, dict(zip(names, raw_captions([preds[n] for n in names], seed=1)))
    model = {n: " ".join(w for w in preds[n].lower().replace(",", " ").replace(".", " ").split()) for n in names}
    return raw_refs, model


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children (the JVM), stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, proc.stdout


def kernel_gains(refs_path: Path, preds_path: Path, tmp: Path, runs: int, env: dict) -> dict:
    """`fsgr score` with every compiled kernel ("all") and with each switched off alone (`fsgr.metrics.speedups`),
    one run of each in turn, `runs` times: the medians, and each kernel's gain, (median off - median all) / median
    off, with the scores checked equal."""
    sys.path.insert(0, str(ROOT / "src"))
    from fsgr.metrics import speedups

    variants = {"all": "", **{k: f"from fsgr.metrics import speedups; speedups.{k} = None; " for k in speedups.KERNELS}}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(runs):
        for name, switch in variants.items():
            code = f"import sys; {switch}from fsgr.cli import main; sys.exit(main(sys.argv[1:]))"
            cmd = [sys.executable, "-c", code, "score", "--refs", str(refs_path), "--preds", str(preds_path),
                   "--metrics", "bleu,rouge,cider", "--json", str(tmp / f"{name}.json")]
            seconds[name].append(timed(cmd, env)[0])
    scores = [json.loads((tmp / f"{name}.json").read_text()) for name in variants]
    if any({k: v for k, v in s.items() if k != "CIDEr"} != {k: v for k, v in scores[0].items() if k != "CIDEr"}
           or abs(s["CIDEr"] - scores[0]["CIDEr"]) > 1e-12 for s in scores):
        raise SystemExit("the scores differ with a kernel switched off")
    median = {name: statistics.median(t) for name, t in seconds.items()}
    return {"kernels_runs": runs, "seconds_median": {k: round(v, 4) for k, v in median.items()},
            "kernel_gain_percent": {k: round(100 * (median[k] - median["all"]) / median[k], 1)
                                    for k in speedups.KERNELS}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10**9)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--text", choices=TEXT_SHAPES, default="flickr-detok", help="the shape of the captions")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--no-compiled", action="store_true",
                        help="ours without the C extension (fsgr.metrics._speedups blocked): the numpy/Python paths")
    parser.add_argument("--kernels", action="store_true",
                        help="instead of the toolkit: `fsgr score` with every compiled kernel and with each switched "
                             "off alone, interleaved --runs times (what each kernel gains on the whole process)")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA}: not found (this benchmark needs the Flickr8k captions beside the repository)")
    if not compileall.compile_dir(str(ROOT / "src" / "fsgr"), quiet=1):
        raise SystemExit("byte-compiling src/fsgr failed")
    refs, preds = load(args.text, args.images)
    ids = {name: k for k, name in enumerate(refs)}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out: dict = {"bench": "score_process", "text": args.text, "images": len(refs),
                 "references": sum(len(r) for r in refs.values())}
    with tempfile.TemporaryDirectory() as tmp:
        refs_path, preds_path = Path(tmp) / "refs.json", Path(tmp) / "preds.json"
        refs_path.write_text(json.dumps({"annotations": [{"image_id": ids[n], "id": j, "caption": c}
                                                         for n in refs for j, c in enumerate(refs[n])]},
                                        ensure_ascii=False), encoding="utf-8")
        preds_path.write_text(json.dumps([{"image_id": ids[n], "caption": preds[n]} for n in refs], ensure_ascii=False),
                              encoding="utf-8")
        # (blocking the extension: an import of a module whose sys.modules entry is None raises ImportError)
        start = ["-c", "import sys; sys.modules['fsgr.metrics._speedups'] = None; from fsgr.cli import main; "
                       "sys.exit(main(sys.argv[1:]))"] if args.no_compiled else ["-m", "fsgr"]
        ours_cmd = [sys.executable, *start, "score", "--refs", str(refs_path), "--preds", str(preds_path),
                    "--metrics", "bleu,rouge,cider", "--json", str(Path(tmp) / "ours.json")]
        if args.kernels:
            print(json.dumps({**out, **kernel_gains(refs_path, preds_path, Path(tmp), args.runs, env)}))
            return
        base_cmd = [sys.executable, "-c", BASELINE, str(refs_path), str(preds_path)]
        base_times, our_times, base_cpu, our_cpu = [], [], [], []
        for _ in range(args.runs):
            t, cpu, base_out = timed(base_cmd, env)
            base_times.append(t)
            base_cpu.append(cpu)
            t, cpu, _ = timed(ours_cmd, env)
            our_times.append(t)
            our_cpu.append(cpu)
        base_scores = json.loads(base_out)
        ours = json.loads((Path(tmp) / "ours.json").read_text())
    out["max_abs_diff"] = max(abs(ours[k] - v) for k, v in base_scores.items())
    out["seconds_pycocoevalcap_process"] = [round(t, 3) for t in base_times]
    out["seconds_fsgr_score_process"] = [round(t, 3) for t in our_times]
    out["speedup_whole_process"] = round(min(base_times) / min(our_times), 1)
    # (the two sides run minutes apart on a machine whose speed drifts by 30-50%: the medians' ratio is the steadier)
    out["speedup_whole_process_median"] = round(statistics.median(base_times) / statistics.median(our_times), 1)
    pairs = [base / ours for base, ours in zip(base_times, our_times)]  # (each run of ours seconds after its pair's)
    out["speedup_whole_process_pairs"] = [round(r, 1) for r in pairs]
    out["speedup_whole_process_paired_median"] = round(statistics.median(pairs), 1)
    out["cpu_seconds_pycocoevalcap_process"] = [round(t, 3) for t in base_cpu]
    out["cpu_seconds_fsgr_score_process"] = [round(t, 3) for t in our_cpu]
    out["speedup_whole_process_cpu"] = round(min(base_cpu) / min(our_cpu), 1)

    sys.path.insert(0, str(ROOT / "src"))
    if args.no_compiled:
        sys.modules["fsgr.metrics._speedups"] = None
    from fsgr.metrics import speedups
    from fsgr.metrics.compare import compare_systems

    out["speedups_compiled"] = speedups.compiled is not None

    cut = {n: " ".join(c.split()[:-2]) for n, c in preds.items()}
    t = time.perf_counter()
    result = compare_systems(refs, {"human": preds, "cut": cut}, "bleu,rouge,cider", samples=args.bootstrap, seed=0,
                             diagnostics=False, top=0)
    out["compare_seconds"] = round(time.perf_counter() - t, 3)
    out["compare_bootstrap_samples"] = args.bootstrap
    out["compare_cider_row"] = next(r for r in result["comparisons"] if r["metric"] == "CIDEr")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
