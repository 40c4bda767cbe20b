#!/usr/bin/env bash
# README quick start, command 1: set up and run the demo on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh device,server >&2
exec .venv/bin/amgs demo "$@"
