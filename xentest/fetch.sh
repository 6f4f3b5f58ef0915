#!/bin/bash
# Fetch, once, what the Xen harness boots: QEMU and busybox from apt (installed),
# Debian 12's Xen 4.17 hypervisor, tools and a 6.1 kernel (.debs downloaded and
# unpacked under $XENTEST_WORK/x, never installed).  A second run finds
# $XENTEST_WORK/fetched.stamp and does nothing.
set -euo pipefail
WORK=${XENTEST_WORK:-/var/tmp/xend-vfb-xen}
STAMP=$WORK/fetched.stamp

# The peer comparison (XENTEST_ARGS=--peer) also needs QEMU's Xen build, which xl starts
# for a guest whose display it serves itself: fetched, unpacked into x/, on request only.
peer() {
    case " ${XENTEST_ARGS:-} " in *" --peer "*) ;; *) return 0 ;; esac
    [ -x "$WORK/x/usr/libexec/xen-qemu-system-i386" ] && return 0
    mkdir -p "$WORK/debs"
    (cd "$WORK/debs" && { ls qemu-system-xen_*.deb >/dev/null 2>&1 \
        || apt-get download -qq qemu-system-xen 2>&1 | grep -v "unsandboxed" >&2 || true; })
    ls "$WORK"/debs/qemu-system-xen_*.deb >/dev/null 2>&1 \
        || { echo "xentest: cannot download qemu-system-xen" >&2; exit 1; }
    dpkg-deb -x "$WORK"/debs/qemu-system-xen_*.deb "$WORK/x"
    echo "xentest: qemu-system-xen unpacked for the peer comparison"
}
# Xen 4.17 as Debian 12 released it (bookworm main), not its security update 4.17.7
# (bookworm-security), which is built without shadow paging (XSA-495: "x86 shadow paging
# is deprecated"): a PV guest's live migration needs shadow paging for log-dirty mode, so
# under 4.17.7 every `xl migrate` of the guest fails ("Failed to enable logdirty").
XEN_VERSION=${XENTEST_XEN_VERSION:-4.17.5+72-g01140da4e8-1}
XEN_PKGS="xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils libxencall1 libxenevtchn1
      libxenforeignmemory1 libxengnttab1 libxenmisc4.17 libxenstore4 libxentoollog1
      libxenhypfs1 libxentoolcore1 libxendevicemodel1"
if [ -f "$STAMP" ] && [ -f "$WORK/xen" ] && [ -f "$WORK/vmlinuz" ] \
        && [ "$(cat "$STAMP")" = "xen $XEN_VERSION" ]; then
    peer
    exit 0
fi

need=()
for tool in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio depmod:kmod; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    echo "xentest: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The kernel the metapackage points at (e.g. linux-image-6.1.0-50-amd64).
KPKG=${XENTEST_KERNEL_PACKAGE:-$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')}
KV=${KPKG#linux-image-}
mkdir -p "$WORK/debs"
cd "$WORK/debs"
# One package at one version (the one apt picks when $2 is empty), downloaded once;
# prints the .deb's name.
fetch() {
    local pattern="${1}_${2:-*}_*.deb"
    # (apt warns that it downloads unsandboxed as root: harmless here)
    ls $pattern >/dev/null 2>&1 \
        || apt-get download -qq "$1${2:+=$2}" 2>&1 | grep -v "unsandboxed" >&2 || true
    ls $pattern 2>/dev/null | tail -1 || true
}
debs=()
for p in $XEN_PKGS; do
    deb=$(fetch "$p" "$XEN_VERSION")
    if [ -z "$deb" ]; then
        echo "xentest: $p $XEN_VERSION is no longer in the archive: taking apt's version," \
             "whose hypervisor may lack shadow paging (then PV guests cannot migrate)" >&2
        deb=$(fetch "$p" "")
    fi
    [ -n "$deb" ] || { echo "xentest: cannot download $p" >&2; exit 1; }
    debs+=("$deb")
done
for p in libyajl2 "$KPKG"; do
    deb=$(fetch "$p" "")
    [ -n "$deb" ] || { echo "xentest: cannot download $p" >&2; exit 1; }
    debs+=("$deb")
done
rm -rf "$WORK/x.new"
mkdir -p "$WORK/x.new"
for d in "${debs[@]}"; do dpkg-deb -x "$d" "$WORK/x.new"; done
rm -rf "$WORK/x"
mv "$WORK/x.new" "$WORK/x"
cd "$WORK"
zcat x/boot/xen-4.17-amd64.gz > xen
cp "x/boot/vmlinuz-$KV" vmlinuz
echo "$KV" > kernel-version
echo "xen $XEN_VERSION" > "$STAMP"
peer
grep -q "^CONFIG_SHADOW_PAGING=y" x/boot/xen-4.17-amd64.config \
    || echo "xentest: warning: this hypervisor has no shadow paging: PV guests cannot migrate" >&2
echo "xentest: fetched into $WORK ($(basename "${debs[0]}" .deb), kernel $KV)"
