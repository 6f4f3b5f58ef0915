#!/usr/bin/env bash
# Set up everything (first run only) and run the whole test suite: ruff, pytest, then
# the real-Xen harness (xentest/run.sh: Xen 4.17 under QEMU, about 100 MB of downloads
# the first time).  --quick skips the harness; every other argument goes to pytest.
# See README.md.
QUICK=0
PYTEST_ARGS=()
for arg in "$@"; do
    if [ "$arg" = --quick ]; then QUICK=1; else PYTEST_ARGS+=("$arg"); fi
done
source "$(dirname "$0")/tools/bootstrap.sh"
cd "$ROOT"
"$VENV/bin/ruff" check --quiet xend_vfb tests bench xentest tools
"$VENV/bin/python" -m pytest -q "${PYTEST_ARGS[@]}"
if [ "$QUICK" = 1 ]; then
    echo "test.sh: --quick: the real-Xen harness (xentest/run.sh) was skipped"
    exit 0
fi
exec "$ROOT/xentest/run.sh"
