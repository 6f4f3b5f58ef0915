# Sourced by demo.sh and test.sh: installs, idempotently, everything the project
# needs on a fresh Debian 12 machine (run as root), and is quick the second time.
#   - Debian packages: Xen's libraries and headers, the xenstore CLI tools, libxkbcommon
#     and the XKB layouts (the VNC server's keymaps; pip builds the bindings against it),
#     and for the real-viewer tests (tests/test_viewers.py) Xvfb, setxkbmap, TigerVNC's
#     viewer and gtk-vnc with its GObject bindings for the system's python3
#   - the C xenstored binary, unpacked from xen-utils-4.17 into .build/ (not installed)
#   - the LD_PRELOAD shim that lets xenstored run without a hypervisor
#   - Chromium and its WebDriver (the browser console's tests), npm when there is none
#   - noVNC ($NOVNC_VERSION, from the npm registry) into .build/novnc/, served as it ships
#   - the virtualenv .venv/ with the project installed in development mode
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/.build
VENV=$ROOT/.venv
DEBS="libxenmisc4.17 libxen-dev xenstore-utils libxkbcommon0 libxkbcommon-dev xkb-data
      chromium chromium-driver tigervnc-viewer xvfb x11-xkb-utils python3-gi gir1.2-gtk-vnc-2.0"
# Debian's npm, unless one is there already (e.g. with NodeSource's nodejs, which has it).
command -v npm >/dev/null || DEBS="$DEBS npm"
NOVNC_VERSION=1.7.0

say() { printf '[setup] %s\n' "$*" >&2; }

missing_debs() {
    local pkg
    for pkg in $DEBS; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || printf '%s ' "$pkg"
    done
}

install_debs() {
    local missing
    missing=$(missing_debs)
    [ -z "$missing" ] && return 0
    say "installing Debian packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends $missing >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null; }
}

fetch_xenstored() {
    local bin=$BUILD/xen/usr/lib/xen-4.17/bin/xenstored
    [ -x "$bin" ] && return 0
    say "unpacking xenstored from xen-utils-4.17 into .build/xen"
    mkdir -p "$BUILD/debs"
    (cd "$BUILD/debs" && apt-get download -q xen-utils-4.17 >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get download -q xen-utils-4.17 >/dev/null; })
    dpkg-deb -x "$BUILD"/debs/xen-utils-4.17_*.deb "$BUILD/xen"
}

build_shim() {
    local src=$ROOT/xend_vfb/xenstore/shim.c out=$BUILD/xenstored-shim.so
    [ "$out" -nt "$src" ] && return 0
    say "building the xenstored shim"
    mkdir -p "$BUILD"
    gcc -shared -fPIC -O2 -Wall -Werror -o "$out" "$src" -ldl
}

fetch_novnc() {
    local dir=$BUILD/novnc
    grep -qs "\"version\": \"$NOVNC_VERSION\"" "$dir/node_modules/@novnc/novnc/package.json" \
        && return 0
    say "installing noVNC $NOVNC_VERSION into .build/novnc"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts --silent \
        "@novnc/novnc@$NOVNC_VERSION" >&2
}

make_venv() {
    local stamp=$VENV/.installed
    if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/setup.py" ]; then
        return 0
    fi
    say "creating the virtualenv .venv and installing the project"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]" 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
    "$VENV/bin/python" -c "import xend_vfb, twisted, pyxs, xkbcommon.xkb" 
    touch "$stamp"
}

install_debs
fetch_xenstored
build_shim
fetch_novnc
make_venv
export PATH=$VENV/bin:$PATH
export XEND_VFB_XENSTORED=$BUILD/xen/usr/lib/xen-4.17/bin/xenstored
export XEND_VFB_SHIM=$BUILD/xenstored-shim.so
