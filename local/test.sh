#!/usr/bin/env bash
# README command 2: install what is missing, then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source local/bootstrap.sh dev
ruff check src functions worker_service tests bench local infra
mypy
# Most tests wait on servers and workers, not on a core: two processes halve the wall time.
# --dist loadfile: a module runs whole, in order, on one process (module fixtures share state).
pytest -q -n "${TEST_PROCESSES:-2}" --dist loadfile "$@"
