#!/usr/bin/env bash
# Set up everything this project needs on a fresh Debian machine (idempotent).
#   scripts/setup.sh          the package with the offline engine and JupyterLab (demo)
#   scripts/setup.sh --test   also the test tools, Chromium, espeak-ng, HAProxy and
#                             JupyterHub's configurable-http-proxy
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

need_apt=()
if [[ $want_test == 1 ]]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
  # The servers behind a real load balancer (tests/integration/test_service_haproxy.py).
  command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need_apt+=(haproxy)
fi
if ((${#need_apt[@]})); then
  echo "==> installing Debian packages: ${need_apt[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [[ $want_test == 1 ]]; then
  echo "==> installing soniox-widget[dev] (package, offline engine, test tools)"
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  echo "==> installing soniox-widget[local] and JupyterLab"
  .venv/bin/python -m pip install -q -e ".[local]" "jupyterlab>=4.2" "ipykernel>=6.29"
fi
# An editable install skips the package's data files, among them the file that turns on its
# Jupyter server extension (TCP_NODELAY on kernel WebSockets); put it where a wheel puts it.
# (`jupyter server extension enable` refuses an extension that no config file names yet.)
install -D -m 644 etc/jupyter/jupyter_server_config.d/soniox_widget.json \
  .venv/etc/jupyter/jupyter_server_config.d/soniox_widget.json

if [[ $want_test == 1 && ( ! -f .cache/e2e-node/node_modules/requirejs/require.js ||
      ! -f .cache/e2e-node/node_modules/axe-core/axe.min.js ) ]]; then
  # The HTML-export test serves the widgets' embed manager and require.js from 127.0.0.1
  # instead of the CDNs an exported page names (tests/e2e/test_saved_notebook.py); the
  # accessibility test injects axe-core into the page (tests/e2e/test_keyboard.py).
  echo "==> installing the widgets' embed manager and axe-core for the browser tests (npm)"
  mkdir -p .cache/e2e-node
  npm install --silent --no-audit --no-fund --prefix .cache/e2e-node \
    @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.8 axe-core@4.10.3 >/dev/null
fi
if [[ $want_test == 1 && ! -x .cache/hub-node/node_modules/.bin/configurable-http-proxy ]]; then
  # JupyterHub's own proxy, for the two-users hub test (tests/e2e/test_jupyterhub.py).
  echo "==> installing configurable-http-proxy for the JupyterHub test (npm)"
  mkdir -p .cache/hub-node
  npm install --silent --no-audit --no-fund --prefix .cache/hub-node \
    configurable-http-proxy@5.0.1 >/dev/null
fi
