"""COCO caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D in Python (equal to pycocoevalcap 1.2), METEOR 1.5 and
SPICE 1.0 through the toolkit's jars when Java is present, a pure-Python PTB tokenizer, and the CIDEr-D reward
for SCST (`fsgr.metrics.reward.CiderDReward`). See docs/metrics.md.

    from fsgr.metrics import score
    result = score({1: ["A dog runs.", "A dog is running."]}, {1: "A dog running."})
    result["CIDEr"], result.unavailable   # unavailable: {"SPICE": "why it could not run"}
"""

from fsgr.metrics.score import ALL_METRICS, METRIC_KEYS, Scores, score, score_tokenized
from fsgr.metrics.tokenizer import PUNCTUATIONS, ptb_tokenize

__all__ = ["ALL_METRICS", "METRIC_KEYS", "PUNCTUATIONS", "Scores", "ptb_tokenize", "score", "score_tokenized"]
