#!/usr/bin/env bash
# Set everything up, then run the main job on the built-in demo fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hostbatch demo "$@"
