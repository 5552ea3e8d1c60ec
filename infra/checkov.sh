#!/usr/bin/env bash
# Run checkov on infra/terraform offline. checkov lives in its own virtualenv (.venv-checkov)
# because it pins and replaces python-hcl2, which the project's own tests import.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-checkov"
python="${CHECKOV_PYTHON:-python3}"
if [[ ! -x "$venv/bin/checkov" ]]; then
  echo "checkov.sh: creating $venv (first run only, takes a few minutes)" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "checkov>=3.2,<4"
fi
cd "$root"
exec "$venv/bin/checkov" -d infra/terraform --skip-download --framework terraform --compact --quiet "$@"
