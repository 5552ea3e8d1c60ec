"""The local stack launcher (see heavylift.cli.devstack): `python local/stack.py up|demo`."""

from heavylift.cli.devstack import app

if __name__ == "__main__":
    app()
