"""Evaluation beyond the text metrics, one module per job: `coco_files` (COCO captions, results and instances files
read and checked; the evaluation servers' results files written), `scoring` (files scored as `fsgr score` and
`fsgr compare` score them, and their tables), `clipscore` (CLIPScore / RefCLIPScore: a CLIP and the images) and
`extras` (the routing of the extra metrics). Sits above `models` and `data`, below the CLI; the pure text metrics stay
in `fsgr.metrics`."""
