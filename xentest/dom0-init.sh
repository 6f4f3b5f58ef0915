#!/bin/sh
# dom0's /init (busybox, in the initramfs).
#
# Loads the Xen and 9p modules, then builds a root for the test to run in:
# the host's / (9p, read-only) under a tmpfs overlay, so the host's Python,
# the checkout and its .venv appear at the same paths as on the host and
# everything is writable in memory without touching the host.  /dev, /proc
# (with /proc/xen) and /sys are bound in recursively; the writable results
# share is mounted at /xentest-results.  dom0-stage2.sh then runs in that root.
# The kernel command line carries xentest.repo=, xentest.work=, xentest.xenstore=
# and xentest.args= (the driver's options, ':' for spaces).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
say() { echo "XENTEST-DOM0: $*"; }
REPO= WORK= XS=socket ARGS=
for word in $(cat /proc/cmdline); do
    case $word in
        xentest.repo=*) REPO=${word#*=} ;;
        xentest.work=*) WORK=${word#*=} ;;
        xentest.xenstore=*) XS=${word#*=} ;;
        xentest.args=*) ARGS=$(echo "${word#*=}" | tr ':' ' ') ;;
    esac
done
say "kernel $(uname -r) up $(cut -d' ' -f1 /proc/uptime)s repo=$REPO work=$WORK"
for m in $(cat /etc/xentest-modules); do
    insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
mount -t xenfs xenfs /proc/xen || say "xenfs mount failed"
ip link set lo up   # the VNC client in dom0 talks to the backend over loopback

fail() { say "FATAL: $*"; sync; poweroff -f; }
mkdir -p /lower /rw /host
O=trans=virtio,version=9p2000.L,msize=262144
# The host root is read-only here: let the guest cache it (far fewer 9p round trips).
mount -t 9p -o $O,ro,cache=loose hostroot /lower || fail "cannot mount the host's root over 9p"
mount -t tmpfs -o size=300m tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /host \
    || fail "cannot mount the overlay root"
# Fresh /run and /tmp, but a checkout (or work directory) that lives under one of
# them, as a CI clone may, stays visible: moved aside, then back over the tmpfs.
mkdir -p /keep
n=0
for path in "$REPO" "$WORK"; do
    case $path in
        /tmp/*|/run/*) mkdir -p /keep/$n && mount --bind "/host$path" /keep/$n \
                           && echo "$path" > /keep/$n.path; n=$((n + 1)) ;;
    esac
done
mount -t tmpfs tmpfs /host/run
mount -t tmpfs tmpfs /host/tmp
for kept in /keep/*.path; do
    [ -f "$kept" ] || continue
    path=$(cat "$kept")
    mkdir -p "/host$path" && mount --move "${kept%.path}" "/host$path" \
        || fail "cannot keep $path visible"
done
mount --rbind /dev /host/dev
mount --rbind /proc /host/proc
mount --rbind /sys /host/sys
mkdir -p /host/xentest-results
mount -t 9p -o $O results /host/xentest-results || fail "cannot mount the results share"
say "root ready up $(cut -d' ' -f1 /proc/uptime)s"
chroot /host /bin/bash "$REPO/xentest/dom0-stage2.sh" "$REPO" "$WORK" "$XS" $ARGS
say "stage2 exit status $? up $(cut -d' ' -f1 /proc/uptime)s"
sync
poweroff -f
