#!/bin/bash
# The real-Xen harness: boots Xen 4.17 + a Linux dom0 + a PV guest under QEMU
# (software emulation, no hypervisor needed on the host) and runs
# xentest/dom0_test.py in dom0 against this checkout.  Prints the report and
# exits non-zero if any check failed.
#
#   xentest/run.sh            # ~5-7 minutes once the downloads are cached
#
# XENTEST_WORK (default /var/tmp/xend-vfb-xen): downloads, images, and one
# directory per run under runs/ (boot.log, report.txt, results.json, the
# guest's console, the backend's log, screenshots).  XENTEST_TIMEOUT: seconds
# before QEMU is stopped (default 2400: a guard against hangs, not a budget).  XENTEST_ARGS: options for the driver
# in dom0 (dom0_test.py), e.g. "--fps --migrations 3".  XENTEST_XENSTORE: how the project's
# code in dom0 reaches xenstored: socket (default, what connect() picks in a
# dom0 running xenstored) or xenbus (/dev/xen/xenbus; see docs/xen-harness.md
# for the xenstored 4.17 abort this still meets).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
export XENTEST_WORK=${XENTEST_WORK:-/var/tmp/xend-vfb-xen}
WORK=$XENTEST_WORK
TIMEOUT=${XENTEST_TIMEOUT:-2400}

if [ ! -x "$REPO/.venv/bin/python" ]; then
    echo "xentest: $REPO/.venv is missing: run ./test.sh once to set it up" >&2
    exit 2
fi
"$HERE/fetch.sh"
"$HERE/build.sh"
# Byte-compile on the host, into a cache outside the checkout: under TCG, dom0
# compiling the modules it imports costs tens of seconds per process.
PY=$REPO/.venv/bin/python
PYCACHE=$WORK/pycache
PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$PYCACHE "$PY" -m compileall -q -j0 \
    "$REPO/xend_vfb" "$REPO/xentest" \
    "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" >/dev/null 2>&1 || true

# The driver's options travel on dom0's kernel command line as one word, ':' for spaces
# (QEMU splits -initrd at commas).
DRIVER_ARGS=$(echo ${XENTEST_ARGS:-} | tr ' ' ':')
case $DRIVER_ARGS in *[!A-Za-z0-9=:._-]*) echo "xentest: XENTEST_ARGS: letters, digits, '-', '=', '.', '_' only" >&2; exit 2 ;; esac
RUN=$WORK/runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN"
ln -sfn "$RUN" "$WORK/runs/latest"
echo "xentest: booting Xen under QEMU TCG; log in $RUN/boot.log"
START=$(date +%s)
# Xen: serial console; dom0: 768 MiB.  dom0's kernel line carries the checkout
# and work paths for dom0-init.sh.  The host's / is shared read-only (dom0 runs
# the checkout and its .venv from it); $RUN is the writable results share.
timeout --foreground "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg -cpu qemu64,+svm,+npt -m 2G -smp 2 \
    -nographic -monitor none -serial stdio -no-reboot \
    -kernel "$WORK/xen" \
    -append "console=com1 com1=115200,8n1 dom0_mem=768M,max:768M loglvl=all guest_loglvl=all noreboot" \
    -initrd "$WORK/vmlinuz console=hvc0 earlyprintk=xen rdinit=/init xentest.repo=$REPO xentest.work=$WORK xentest.xenstore=${XENTEST_XENSTORE:-socket} xentest.args=$DRIVER_ARGS,$WORK/dom0.cpio.gz" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$RUN,mount_tag=results,security_model=none,multidevs=remap" \
    < /dev/null 2>&1 | python3 -u -c '
import sys, time
start = time.monotonic()
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(b"[%7.2f] " % (time.monotonic() - start) + line)
    sys.stdout.buffer.flush()
' > "$RUN/boot.log" || true
ELAPSED=$(( $(date +%s) - START ))

echo "xentest: QEMU ran ${ELAPSED}s; results in $RUN"
if [ -f "$RUN/report.txt" ]; then
    cat "$RUN/report.txt"
else
    echo "FAIL  the test driver wrote no report; last lines of $RUN/boot.log:"
    tail -30 "$RUN/boot.log"
    exit 1
fi
python3 -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["passed"] else 1)' \
    "$RUN/results.json"
