"""One module per CLI verb: `add_arguments(parser)` and `main(args) -> int`.

Keep top-level imports light (no torch): every verb module is imported to build `fsgr --help`.
"""
