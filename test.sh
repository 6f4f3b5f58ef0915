#!/usr/bin/env bash
# Set up everything (first run only) and run the whole test suite. See README.md.
source "$(dirname "$0")/tools/bootstrap.sh"
cd "$ROOT"
"$VENV/bin/ruff" check --quiet xend_vfb tests bench
exec "$VENV/bin/python" -m pytest -q "$@"
