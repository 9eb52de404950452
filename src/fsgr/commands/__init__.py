"""One module per CLI verb: `add_arguments(parser)` and `main(args) -> int`."""

# Deferred imports: every verb module is imported to build `fsgr --help`, so a verb imports its dependencies (torch
# among them) inside main(); top-level imports here stay light.
