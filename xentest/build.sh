#!/bin/bash
# Build the two initramfs images the harness boots, under $XENTEST_WORK:
#   dom0.cpio.gz  busybox, the kernel modules dom0 needs (Xen devices, 9p, overlay)
#                 and dom0-init.sh as /init.  Everything else dom0 runs comes from
#                 the host's root, shared read-only over 9p (see dom0-init.sh).
#   domU.cpio.gz  busybox and domU-init.sh as /init (the kernel has xen-fbfront
#                 and xen-kbdfront built in).
# Both take about a second, so they are rebuilt on every run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${XENTEST_WORK:-/var/tmp/xend-vfb-xen}
KV=$(cat "$WORK/kernel-version")
MODDIR=$WORK/x/lib/modules/$KV/kernel
B=$WORK/build
rm -rf "$B"
mkdir -p "$B/dom0" "$B/domU"

skeleton() {
    mkdir -p "$1"/{bin,sbin,etc,dev,proc,sys,tmp,root}
    cp /bin/busybox "$1/bin/"
    ln -s busybox "$1/bin/sh"
}

# domU (evdev is a module in Debian's kernel: the key test reads /dev/input/event*)
skeleton "$B/domU"
mkdir -p "$B/domU/lib/modules"
cp "$MODDIR/drivers/input/evdev.ko" "$B/domU/lib/modules/"
install -m 755 "$HERE/domU-init.sh" "$B/domU/init"
(cd "$B/domU" && find . | cpio -R 0:0 -H newc -o 2>/dev/null | gzip -1 > "$WORK/domU.cpio.gz.new")
mv "$WORK/domU.cpio.gz.new" "$WORK/domU.cpio.gz"

# dom0: modules in load order (dependencies first).
skeleton "$B/dom0"
mkdir -p "$B/dom0/lib/modules"
MODULES="drivers/xen/xen-privcmd drivers/xen/xenfs/xenfs drivers/xen/xen-evtchn
  drivers/xen/xen-gntdev drivers/xen/xen-gntalloc
  drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev
  drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci
  net/9p/9pnet net/9p/9pnet_virtio fs/netfs/netfs fs/fscache/fscache fs/9p/9p
  fs/overlayfs/overlay"
: > "$B/dom0/etc/xentest-modules"
for m in $MODULES; do
    if [ -f "$MODDIR/$m.ko" ]; then
        cp "$MODDIR/$m.ko" "$B/dom0/lib/modules/"
        basename "$m" >> "$B/dom0/etc/xentest-modules"
    fi  # else built into this kernel
done
install -m 755 "$HERE/dom0-init.sh" "$B/dom0/init"
(cd "$B/dom0" && find . | cpio -R 0:0 -H newc -o 2>/dev/null | gzip -1 > "$WORK/dom0.cpio.gz.new")
mv "$WORK/dom0.cpio.gz.new" "$WORK/dom0.cpio.gz"
