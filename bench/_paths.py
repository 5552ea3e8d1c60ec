"""Imported first by each bench script: the repo root becomes importable (tests.servers, ...)
and this folder stops shadowing the stdlib (bench/queue.py is named like `queue`)."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
