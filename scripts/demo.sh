#!/usr/bin/env bash
# Set up, then open JupyterLab on the quickstart notebook with a live recorder.
# Uses Soniox when SONIOX_API_KEY is set (environment or .env), else the offline engine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
args=(--ServerApp.ip=127.0.0.1)
[[ $(id -u) == 0 ]] && args+=(--ServerApp.allow_root=True)
exec .venv/bin/jupyter lab notebooks/quickstart.ipynb "${args[@]}" "$@"
