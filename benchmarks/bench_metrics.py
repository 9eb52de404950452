"""Ours vs pycocoevalcap 1.2 on the same real captions; prints ONE JSON line.

8,000 Flickr8k images (../shared/data/Flickr8k.token.txt), captions turned back into raw-looking text; the first
caption of each image is held out as the candidate, the other four are the references. Times tokenisation
(pycocoevalcap: the Stanford jar) and each metric, the largest absolute score difference per metric, the speed-up
of tokenise+BLEU+ROUGE-L+CIDEr, and the SCST reward's candidates per second against pycocoevalcap's CiderScorer
on the same batches. `--meteor` adds METEOR (both sides run the same jar; slow). `--images N` changes the size.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (a worktree one level deeper also finds it)
DATA = next((p for p in (ROOT.parent / "shared/data/Flickr8k.token.txt",
                         ROOT.parent.parent / "shared/data/Flickr8k.token.txt") if p.is_file()),
            ROOT.parent / "shared/data/Flickr8k.token.txt")


def detokenize(caption: str) -> str:
    c = caption.strip()
    c = re.sub(r" ([.,!?;:])", r"\1", c)
    c = re.sub(r" ('s|n't|'re|'m|'ll|'ve|'d)\b", r"\1", c)
    return c[:1].upper() + c[1:]


def load(n_images: int):
    caps: OrderedDict[str, list[str]] = OrderedDict()
    for line in DATA.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\S+)#(\d+)\s+(.*)$", line)
        if m:
            caps.setdefault(m.group(1), []).append(detokenize(m.group(3)))
    names = list(caps)[:n_images]
    return {n: caps[n][1:] for n in names}, {n: caps[n][0] for n in names}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--meteor", action="store_true")
    parser.add_argument("--reward-seconds", type=float, default=3.0)
    args = parser.parse_args()

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.cider.cider_scorer import CiderScorer
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from fsgr.metrics.bleu import corpus_bleu
    from fsgr.metrics.cider import corpus_cider_d
    from fsgr.metrics.ngrams import encode_corpus
    from fsgr.metrics.reward import CiderDReward
    from fsgr.metrics.rouge import corpus_rouge_l
    from fsgr.metrics.tokenizer import ptb_tokenize

    refs, preds = load(args.images)
    ids = list(refs)
    out: dict = {"bench": "metrics", "images": len(ids), "references": sum(len(r) for r in refs.values())}

    # --- pycocoevalcap ----------------------------------------------------------------------------------------
    t = time.perf_counter()
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs[i]] for i in ids})
    res = tok.tokenize({i: [{"caption": preds[i]}] for i in ids})
    base = {"tokenize": time.perf_counter() - t}
    t = time.perf_counter()
    base_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    base["bleu"] = time.perf_counter() - t
    t = time.perf_counter()
    base_rouge, _ = Rouge().compute_score(gts, res)
    base["rouge"] = time.perf_counter() - t
    t = time.perf_counter()
    base_cider, _ = Cider().compute_score(gts, res)
    base["cider"] = time.perf_counter() - t

    # --- ours (first call in this process: includes compiling the tokenizer's rules, as a CLI run would) ------
    def run_ours():
        times = {}
        t = time.perf_counter()
        flat = ptb_tokenize([c for i in ids for c in refs[i]])
        cand_tok = ptb_tokenize([preds[i] for i in ids])
        ref_tok, k = [], 0
        for i in ids:
            ref_tok.append(flat[k:k + len(refs[i])])
            k += len(refs[i])
        times["tokenize"] = time.perf_counter() - t
        t = time.perf_counter()
        rows = encode_corpus(ref_tok, cand_tok)
        times["ngram_index"] = time.perf_counter() - t
        t = time.perf_counter()
        bleu = corpus_bleu(ref_tok, cand_tok, rows=rows)
        times["bleu"] = time.perf_counter() - t
        t = time.perf_counter()
        rouge, _ = corpus_rouge_l(ref_tok, cand_tok, rows=rows)
        times["rouge"] = time.perf_counter() - t
        t = time.perf_counter()
        cider, _ = corpus_cider_d(ref_tok, cand_tok, rows=rows)
        times["cider"] = time.perf_counter() - t
        return times, ref_tok, cand_tok, bleu, rouge, cider

    ours, ref_tok, cand_tok, our_bleu, our_rouge, our_cider = run_ours()
    again = run_ours()  # a second call (as inside training): rules compiled, memory already mapped
    assert again[3:] == (our_bleu, our_rouge, our_cider)

    tokens_equal = sum(gts[i] == r for i, r in zip(ids, ref_tok)) + sum(res[i][0] == c for i, c in zip(ids, cand_tok))
    out["tokenized_captions_equal_to_jar"] = f"{tokens_equal}/{len(ids) * 2}"
    out["max_abs_diff"] = {
        **{f"BLEU-{k + 1}": abs(our_bleu[k] - base_bleu[k]) for k in range(4)},
        "ROUGE-L": abs(our_rouge - base_rouge),
        "CIDEr": abs(our_cider - base_cider),
    }
    if args.meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        from fsgr.metrics.meteor import corpus_meteor

        t = time.perf_counter()
        base_meteor, _ = Meteor().compute_score(gts, res)
        base["meteor"] = time.perf_counter() - t
        t = time.perf_counter()
        our_meteor, _ = corpus_meteor(ref_tok, cand_tok)
        ours["meteor"] = time.perf_counter() - t
        out["max_abs_diff"]["METEOR"] = abs(our_meteor - base_meteor)
    out["scores"] = {"BLEU-4": our_bleu[3], "ROUGE-L": our_rouge, "CIDEr": our_cider}
    from fsgr.metrics import speedups

    out["speedups_compiled"] = speedups.compiled is not None  # (the C loops, or the numpy/Python ones)
    out["seconds_pycocoevalcap"] = {k: round(v, 3) for k, v in base.items()}
    out["seconds_ours"] = {k: round(v, 3) for k, v in ours.items()}
    core = ("tokenize", "bleu", "rouge", "cider")
    base_total = sum(base[k] for k in core)
    ours_total = sum(ours[k] for k in core) + ours["ngram_index"]
    out["tok_bleu_rouge_cider_seconds"] = {"pycocoevalcap": round(base_total, 3), "ours": round(ours_total, 3)}
    out["speedup_tok_bleu_rouge_cider"] = round(base_total / ours_total, 1)
    out["ours_second_call_seconds"] = round(sum(again[0].values()), 3)

    # --- SCST reward: training DF from all these references; batches of 50 images x 5 sampled captions -----------
    reward_refs = {k: refs[i] for k, i in enumerate(ids)}
    t = time.perf_counter()
    reward = CiderDReward(reward_refs)
    out["reward_build_seconds"] = round(time.perf_counter() - t, 3)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(200):
        img = np.repeat(rng.integers(0, len(ids), 50), 5)
        batches.append((img.tolist(), [cand_tok[j] for j in img]))
    n, t = 0, time.perf_counter()
    for img, cands in batches:
        reward(img, cands)
        n += len(cands)
        if time.perf_counter() - t > args.reward_seconds:
            break
    out["reward_candidates_per_s"] = round(n / (time.perf_counter() - t))

    full = CiderScorer(n=4, sigma=6.0)
    for k in range(len(ids)):
        full += (None, ref_tok[k])
    full.compute_doc_freq()

    class CountAs(list):  # CiderScorer takes ref_len = log(len(crefs)): make it the number of training images
        def __len__(self):
            return len(ids)

    n, t, max_diff = 0, time.perf_counter(), 0.0
    for img, cands in batches[:20]:
        scorer = CiderScorer(n=4, sigma=6.0)
        for j, c in zip(img, cands):
            scorer += (c, ref_tok[j])
        scorer.document_frequency = full.document_frequency
        scorer.crefs = CountAs(scorer.crefs)
        expected = np.array(scorer.compute_cider())
        n += len(cands)
        max_diff = max(max_diff, float(np.abs(reward(img, cands) - expected).max()))
        if time.perf_counter() - t > args.reward_seconds:
            break
    out["reward_baseline_pycocoevalcap_candidates_per_s"] = round(n / (time.perf_counter() - t))
    out["reward_max_abs_diff"] = max_diff
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
