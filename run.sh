#!/usr/bin/env bash
# One entry point for new users and CI:
#   ./run.sh app    install what is missing into .venv and open the app on a built-in model
#   ./run.sh test   install the test extras into .venv and run the whole test suite
# Installs are idempotent: a stamp file records what was installed for which pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${MSA_VENV:-.venv}"
PY="$VENV/bin/python"

ensure_venv() {
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
  fi
  # torch first: users pick their own build (CPU or CUDA); we only install one when none is present
  if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch>=2.4"
  fi
}

ensure_installed() {  # $1: extras ("" or "[test]")
  local extras="$1"
  local stamp="$VENV/.msa-installed${extras//[^a-z]/-}"
  local want
  want="$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$PY" -m pip install -q -e ".${extras}"
    echo "$want" > "$stamp"
  fi
}

case "${1:-}" in
  app)
    shift
    ensure_venv
    ensure_installed ""
    # localhost unless MSA_ADDRESS says otherwise; no file watcher (MSA_FILE_WATCHER=auto to reload on edits);
    # stdin from /dev/null, so code that asks input() fails at once instead of hanging its page
    exec "$PY" -m streamlit run app.py --server.address "${MSA_ADDRESS:-localhost}" \
      --server.headless "${MSA_HEADLESS:-false}" --server.fileWatcherType "${MSA_FILE_WATCHER:-none}" \
      --browser.gatherUsageStats false "$@" < /dev/null
    ;;
  test)
    shift
    ensure_venv
    ensure_installed "[test]"
    exec "$PY" -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh app | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
