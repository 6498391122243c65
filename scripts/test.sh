#!/usr/bin/env bash
# Set up, then run every check and test: lint, the front end's own unit tests (Node's
# built-in runner, no npm packages), unit, integration, browser end-to-end (headless
# Chromium) and the demo notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
node --test tests/js/
# The local copies of the embed manager that the HTML-export test serves (see setup.sh).
export SONIOX_E2E_NODE_MODULES="${SONIOX_E2E_NODE_MODULES:-$PWD/.cache/e2e-node/node_modules}"
.venv/bin/python -m pytest --nbval-lax -p no:cacheprovider "$@"
