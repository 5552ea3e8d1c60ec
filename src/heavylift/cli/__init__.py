"""The `heavylift` command line (typer + rich)."""
