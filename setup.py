from setuptools import find_packages, setup

setup(
    name="xend-vfb",
    version="0.1.0",
    description="Paravirtual display and keyboard devices (vfb, vkbd) for Xen guests, "
    "as a xend-style device-controller plugin",
    packages=find_packages(include=["xend_vfb", "xend_vfb.*"]),
    package_data={"xend_vfb": ["hotplug/vfb", "hotplug/vkbd"], "xend_vfb.xenstore": ["shim.c"],
                  "xend_vfb.web": ["console.html", "console.js"]},
    python_requires=">=3.11",
    install_requires=[
        "Twisted>=24.3",
        "pyxs==0.4.1",
        "zope.interface>=6",
        "Pillow>=10",
        "pygame>=2.5",
        # cffi bindings built against Debian's libxkbcommon-dev (tools/bootstrap.sh).
        "xkbcommon~=1.5.0",
        # VeNCrypt (TLS for VNC) through Twisted's TLS, and the DES of VNC authentication.
        "cryptography>=43",
        "pyOpenSSL>=24",
        "service_identity>=24",
        # The browser console's WebSocket (noVNC itself comes from npm: tools/bootstrap.sh).
        "autobahn>=23.1",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "pytest-timeout>=2",
            "hypothesis>=6",
            "vncdotool>=1.2",
            # the real-viewer suite reads the Xvfb screen (tests/test_viewers.py)
            "python-xlib>=0.33",
            "ruff>=0.6",
            # Drives Debian's chromium through chromium-driver (tools/bootstrap.sh).
            "selenium>=4.10",
        ],
    },
    entry_points={
        "console_scripts": [
            "xend-vfb = xend_vfb.cli:main",
            "xend-vfb-backend = xend_vfb.backend.main:main",
            "xend-vfb-guest = xend_vfb.guest.main:main",
        ],
    },
)
