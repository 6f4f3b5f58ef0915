"""A minimal viewer on gtk-vnc (the widget virt-viewer and gvncviewer are built on), for
test_viewers.py: run by the system's python3 (GObject introspection, Debian's
python3-gi and gir1.2-gtk-vnc-2.0), not the project's virtualenv.

    /usr/bin/python3 tests/gtkvnc_viewer.py HOST PORT

Its window shows the framebuffer unscaled and takes the guest's size whenever the
guest resizes (gvncviewer scales instead when no window manager resizes it); it exits
when the connection ends.  Keys go as gtk-vnc sends them (QEMU extended key events
when the server offers them).
"""

import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("GtkVnc", "2.0")
from gi.repository import Gtk, GtkVnc  # noqa: E402


def main() -> None:
    host, port = sys.argv[1], sys.argv[2]
    window = Gtk.Window(title="gtk-vnc viewer")
    display = GtkVnc.Display()
    display.set_scaling(False)
    window.add(display)

    def initialised(vnc):
        window.set_title(f"{vnc.get_name()} - gtk-vnc")
        window.resize(vnc.get_width(), vnc.get_height())

    display.connect("vnc-initialized", initialised)
    display.connect("vnc-desktop-resize",
                    lambda vnc, width, height: window.resize(width, height))
    display.connect("vnc-disconnected", lambda vnc: Gtk.main_quit())
    window.connect("destroy", lambda w: Gtk.main_quit())
    display.open_host(host, port)
    window.show_all()
    Gtk.main()


if __name__ == "__main__":
    main()
