"""A minimal viewer on gtk-vnc (the widget virt-viewer and gvncviewer are built on), for
test_viewers.py: run by the system's python3 (GObject introspection, Debian's
python3-gi and gir1.2-gtk-vnc-2.0), not the project's virtualenv.

    /usr/bin/python3 tests/gtkvnc_viewer.py HOST PORT [--password PW] [--power ACTION]

Its window shows the framebuffer unscaled and takes the guest's size whenever the
guest resizes (gvncviewer scales instead when no window manager resizes it); it exits
when the connection ends.  Keys go as gtk-vnc sends them (QEMU extended key events
when the server offers them).  With `--power` (shutdown, reboot, reset) it asks for
that action through the xvp extension as soon as the server offers power control, as
gvncviewer's Power menu does, and prints ``power-control-requested`` (or
``power-control-failed`` when the server refuses) on stdout.
"""

import argparse

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("GtkVnc", "2.0")
gi.require_version("GVnc", "1.0")
from gi.repository import Gtk, GtkVnc, GVnc  # noqa: E402

ACTIONS = {
    "shutdown": GVnc.ConnectionPowerAction.SHUTDOWN,
    "reboot": GVnc.ConnectionPowerAction.REBOOT,
    "reset": GVnc.ConnectionPowerAction.RESET,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port")
    parser.add_argument("--password")
    parser.add_argument("--power", choices=sorted(ACTIONS))
    args = parser.parse_args()

    window = Gtk.Window(title="gtk-vnc viewer")
    display = GtkVnc.Display()
    display.set_scaling(False)
    window.add(display)

    def initialised(vnc):
        window.set_title(f"{vnc.get_name()} - gtk-vnc")
        window.resize(vnc.get_width(), vnc.get_height())

    def credentials(vnc, wanted):
        if args.password is not None:
            vnc.set_credential(GtkVnc.DisplayCredential.PASSWORD, args.password)

    def powerControl(connection):
        connection.power_control(ACTIONS[args.power])
        print("power-control-requested", flush=True)

    display.connect("vnc-initialized", initialised)
    display.connect("vnc-auth-credential", credentials)
    display.connect("vnc-desktop-resize",
                    lambda vnc, width, height: window.resize(width, height))
    display.connect("vnc-disconnected", lambda vnc: Gtk.main_quit())
    if args.power:
        connection = display.get_connection()
        connection.connect("vnc-power-control-initialized", powerControl)
        connection.connect("vnc-power-control-failed",
                           lambda c: print("power-control-failed", flush=True))
    window.connect("destroy", lambda w: Gtk.main_quit())
    display.open_host(args.host, args.port)
    window.show_all()
    Gtk.main()


if __name__ == "__main__":
    main()
