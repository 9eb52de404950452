from fsgr.cli import run

run()
