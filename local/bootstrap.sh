#!/usr/bin/env bash
# Installs what heavylift needs on a fresh Debian/Ubuntu machine with Python 3.11, then leaves a
# virtualenv in .venv. Usage: source local/bootstrap.sh EXTRAS   (e.g. "dev" or "functions,worker")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-dev}"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v curl >/dev/null || need_apt+=(curl)
command -v npm >/dev/null || need_apt+=(nodejs npm)  # bull-board interop tests
# OCR: Tesseract and its English data (the tesserocr wheel bundles the library; the data is
# Debian's). Other OCR_LANGUAGES need their tesseract-ocr-<lang> package too.
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr)
[[ -f /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ]] || need_apt+=(tesseract-ocr-eng)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
    echo "missing ${need_apt[*]}: run 'apt-get install -y ${need_apt[*]}' as root" >&2
    exit 1
  fi
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  echo "installing ${need_apt[*]} (apt-get)" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [[ ! -x "$root/.venv/bin/python" ]]; then
  "$python" -m venv "$root/.venv"
fi
stamp="$root/.venv/.installed-$extras"
if [[ ! -f "$stamp" || "$root/pyproject.toml" -nt "$stamp" ]]; then
  echo "installing heavylift[$extras] into .venv" >&2
  "$root/.venv/bin/pip" install -q --upgrade pip >/dev/null
  "$root/.venv/bin/pip" install -q -e "$root[$extras]"
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
