"""The metric flags `fsgr score` and `fsgr compare` share: --metrics and what the extra metrics need."""

from __future__ import annotations


def add_metric_arguments(parser) -> None:
    parser.add_argument("--metrics", default=None, metavar="LIST",
                        help="comma-separated subset of bleu,meteor,rouge,cider,spice (default: all) plus "
                             "clipscore,refclipscore (need --clip and --images), chair (needs --instances) and "
                             "concepts (needs --concepts)")
    parser.add_argument("--train-refs", default=None, metavar="TRAIN.json",
                        help="training captions (COCO captions format): diagnostics add the share copied verbatim")
    parser.add_argument("--clip", default=None, metavar="CLIP.pt", help="OpenAI-format CLIP for CLIPScore "
                                                                        "(the paper's standard is ViT-B-32.pt)")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="image folder for CLIPScore (files named by image id or COCO/nocaps file name)")
    parser.add_argument("--instances", default=None, metavar="INSTANCES.json",
                        help="COCO instance annotations for CHAIR (instances_val2014.json)")
    parser.add_argument("--concepts", default=None, metavar="CONCEPTS.json",
                        help="a closed concept world for --metrics concepts: {\"concepts\": [...], \"groups\": "
                             "{name: [...]}, \"images\": [{\"image_id\": ID, \"concepts\": [...]}]} (docs/metrics.md)")
    parser.add_argument("--device", default=None, help="device for CLIPScore (cpu, cuda, ...; default: CUDA if any)")
