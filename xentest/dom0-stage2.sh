#!/bin/bash
# dom0, stage 2: runs as root in the overlay of the host's root (see dom0-init.sh).
# Installs Xen's tools from the unpacked .debs into the in-memory overlay, starts
# xenstored, xen-init-dom0 and xenconsoled, then the test driver from the checkout
# with the checkout's own .venv.
# usage: dom0-stage2.sh REPO WORK [socket|xenbus] [DRIVER OPTIONS...]
REPO=$1
WORK=$2
XS=${3:-socket}
shift 3
OUT=/xentest-results
say() { echo "XENTEST-DOM0: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }

X=$WORK/x
mkdir -p /usr/lib/xen-4.17/bin
for b in xenstored xenconsoled xenconsole xl xen-init-dom0 libxl-save-helper; do
    cp -a "$X/usr/lib/xen-4.17/bin/$b" /usr/lib/xen-4.17/bin/
done
cp -a "$X"/usr/lib/x86_64-linux-gnu/. /usr/lib/x86_64-linux-gnu/
cp -a "$X"/usr/bin/xenstore* /usr/bin/
# QEMU's Xen build, where xl looks for it (only fetched for the peer comparison, --peer).
[ -x "$X/usr/libexec/xen-qemu-system-i386" ] && cp -a "$X/usr/libexec/xen-qemu-system-i386" /usr/libexec/
mkdir -p /etc/xen
[ -f /etc/xen/xl.conf ] || : > /etc/xen/xl.conf   # defaults are what we want
# The copies land in a directory ld.so searches anyway; ldconfig (a minute or two over 9p
# under TCG: it reads every library on the host) only if something is not found.
if ldd /usr/lib/xen-4.17/bin/xl /usr/lib/xen-4.17/bin/xenstored | grep -q "not found"; then
    ldconfig
fi
say "xen tools copied $(up)s"
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /var/run/xen /var/run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen/console

# Foreground (-N) in the background, so its exit status and last words are kept.
( xenstored -N --pid-file /var/run/xen/xenstored.pid ${XENTEST_XENSTORED_TRACE:+-T $OUT/xenstored-trace.txt} \
    > "$OUT/xenstored.out" 2>&1; echo "xenstored exited with status $?" >> "$OUT/xenstored.out" ) &
for _ in $(seq 50); do xenstore-read / >/dev/null 2>&1 && break; sleep 0.1; done
xen-init-dom0 >/dev/null || say "xen-init-dom0 failed"
xenconsoled --pid-file=/var/run/xen/xenconsoled.pid --log=guest \
    --log-dir=/var/log/xen/console || say "xenconsoled failed"
say "xen tools up $(up)s: $(xl info | awk '/^xen_version/ {print "xen", $3}')"

export XEND_VFB_RUN_DIR=/run/xend-vfb
export PYTHONUNBUFFERED=1
export PYTHONPYCACHEPREFIX=$WORK/pycache   # filled by run.sh on the host
say "starting the driver $(up)s"
"$REPO/.venv/bin/python" "$REPO/xentest/dom0_test.py" --repo "$REPO" --work "$WORK" --out "$OUT" \
    --xenstore "$XS" "$@"
rc=$?
if [ $rc -ne 0 ]; then
    {
        echo "== xenstored over its socket"; timeout 5 xenstore-ls -f /local/domain/0/backend
        echo "== xenstored over /dev/xen/xenbus"
        XENSTORED_PATH=/dev/xen/xenbus timeout 5 xenstore-read /local/domain/0/name
        echo "== domains"; timeout 20 xl list -v
        echo "== xl info"; timeout 20 xl info
        echo "== processes"; ps -eo pid,stat,wchan:32,args
        echo "== blocked tasks"; echo w > /proc/sysrq-trigger; sleep 1; dmesg | tail -150
    } > "$OUT/diagnostics.txt" 2>&1
fi
xl dmesg > "$OUT/xl-dmesg.txt" 2>&1
cp -a /var/log/xen/console/. "$OUT/" 2>/dev/null
mkdir -p "$OUT/xl-logs" && cp -a /var/log/xen/*.log "$OUT/xl-logs/" 2>/dev/null
cp -a "$XEND_VFB_RUN_DIR"/*.log "$OUT/" 2>/dev/null
say "driver exit status $rc up $(up)s"
exit $rc
