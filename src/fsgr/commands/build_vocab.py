"""`fsgr data`. (Not built yet: owned by the  work.)"""

from fsgr.errors import FsgrError


def add_arguments(parser):
    pass


def main(args) -> int:
    raise FsgrError("'fsgr data' is not built yet")
