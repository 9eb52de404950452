"""The serving tests' tiny trained checkpoint, its images, its Captioner and a live server (tests/serving/conftest.py),
for the export tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_serving_conftest",
                                               Path(__file__).resolve().parents[1] / "serving" / "conftest.py")
_serving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_serving)

tiny_images, tiny_checkpoint, captioner, live = (_serving.tiny_images, _serving.tiny_checkpoint, _serving.captioner,
                                                 _serving.live)
