#!/usr/bin/env bash
# Set up, then run every check and test: lint, front-end copy check, unit,
# integration, browser end-to-end (headless Chromium) and the demo notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
node js/check-static.mjs
.venv/bin/python -m pytest --nbval-lax -p no:cacheprovider "$@"
