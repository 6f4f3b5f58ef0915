#!/usr/bin/env bash
# Set up everything (first run only) and run the demo. See README.md.
source "$(dirname "$0")/tools/bootstrap.sh"
exec "$VENV/bin/python" "$ROOT/tools/demo.py" "$@"
