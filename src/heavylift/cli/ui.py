"""Terminal output shared by the CLI commands: JSON on stdout, progress bars on stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

out = Console()
err = Console(stderr=True)


def show(data: Any) -> None:
    out.print_json(json.dumps(data))


def new_progress() -> Progress:
    return Progress(TextColumn("{task.description}", style="bold"), BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[state]}"),
                    console=err)
