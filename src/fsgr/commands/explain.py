"""`fsgr training`. (Not built yet: owned by the  work.)"""

from fsgr.errors import FsgrError


def add_arguments(parser):
    pass


def main(args) -> int:
    raise FsgrError("'fsgr training' is not built yet")
