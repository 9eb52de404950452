"""Serving a trained model: bulk captioning to JSON lines (`bulk`), the web page and JSON API (`server`, `page`,
`batching`; `pip install fsgr[serve]`). Imports nothing from fsgr.training."""

# Deferred imports: the server's web stack is the optional extra fsgr[serve], and bulk mode's loader and progress
# bar load when it runs, so `fsgr caption` on a few images stays light.

