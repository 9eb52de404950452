"""COCO caption metrics without Java for BLEU, ROUGE-L and CIDEr-D (equal to pycocoevalcap 1.2), METEOR and SPICE
through the toolkit's jars when Java is present, and the CIDEr-D reward for SCST. See docs/metrics.md."""

from fsgr.metrics.tokenizer import PUNCTUATIONS, ptb_tokenize

__all__ = ["PUNCTUATIONS", "ptb_tokenize"]
