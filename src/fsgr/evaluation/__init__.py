"""Evaluation that needs more than text: CLIPScore / RefCLIPScore (a CLIP and the images) and the routing of the
extra metrics (CLIPScore, CHAIR) for `fsgr score` and `fsgr compare`. Sits above `models` and `data`, below the CLI;
the pure text metrics stay in `fsgr.metrics`."""
