#!/usr/bin/env bash
# README command 1: install what is missing, bring the local stack up, push a sample document
# through the real HTTP API and print the result.
set -euo pipefail
cd "$(dirname "$0")/.."
source local/bootstrap.sh local
python local/stack.py demo "$@"
