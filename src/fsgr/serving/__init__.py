"""Serving a trained model: bulk captioning to JSON lines (`bulk`), the web page and JSON API (`server`, `page`,
`batching`; `pip install fsgr[serve]`). Imports nothing from fsgr.training."""
