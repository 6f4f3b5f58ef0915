#!/bin/sh
# The PV guest's /init (busybox).  Reports what the guest kernel sees on its
# console (hvc0, logged by xenconsoled in dom0) as "DOMU: ..." lines the dom0
# driver looks for:
#   DOMU: FB0 ...          /dev/fb0 appeared (xen-fbfront connected)
#   DOMU: STATE ...        the frontends' XenbusState as the guest kernel sees it
#   DOMU-EV <48 hex>       each input_event read from the keyboard's evdev device
#   DOMU: FB1 present ...  /dev/fb1 appeared (a display hot-plugged by vfb-attach)
#   DOMU: FB1 gone ...     /dev/fb1 went away again (vfb-detach)
#   DOMU: REDRAW ...       after the key R: the guest redraws its framebuffer
#                          (alternating noise and black frames) for $REDRAW_SECS
#   DOMU: DEV ...          whenever /dev/fb0 or the kernel's vfb-0/vkbd-0 state
#                          changes (e.g. across a save/restore or a migration)
#   DOMU: KEYSTATE x ...   after the key X: the same state, now
#   DOMU: REBOOTING ...    after the key B: the guest reboots itself (reboot -f)
# It writes lines of text to tty1, which fbcon shows on the framebuffer.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
insmod /lib/modules/evdev.ko
# `xl shutdown` makes the kernel run /sbin/poweroff (orderly_poweroff); with no init
# system to ask, power off at once.  (`xl reboot` needs nothing: with Ctrl-Alt-Del
# left to the kernel, it restarts by itself.)
printf '#!/bin/sh\nexec /bin/busybox poweroff -f\n' > /sbin/poweroff
chmod 755 /sbin/poweroff
REDRAW_SECS=40
say() { echo "DOMU: $*"; }
say "UP $(uname -r) at $(cut -d' ' -f1 /proc/uptime)s"
i=0
while [ ! -e /dev/fb0 ] && [ $i -lt 1200 ]; do sleep 0.25; i=$((i + 1)); done
if [ ! -e /dev/fb0 ]; then
    say "NO-FB0 after 300s; xen devices: $(ls /sys/bus/xen/devices | tr '\n' ' ')"
    exec sleep 2147483647
fi
G=/sys/class/graphics/fb0
say "FB0 name=$(cat $G/name) size=$(cat $G/virtual_size) bpp=$(cat $G/bits_per_pixel) stride=$(cat $G/stride) at $(cut -d' ' -f1 /proc/uptime)s"
for d in vfb-0 vkbd-0; do
    i=0
    until grep -q -x -E '4|Connected' /sys/bus/xen/devices/$d/state 2>/dev/null || [ $i -ge 80 ]; do
        sleep 0.25; i=$((i + 1))
    done
    say "STATE $d $(cat /sys/bus/xen/devices/$d/state 2>/dev/null)"
done
dmesg | grep -i -E 'xenfb|xen-fbfront|xenkbd|kbdfront|fb0|frame buffer' | sed 's/^/DOMU-DMESG /'

# Text for fbcon to draw.
for n in 1 2 3 4 5 6 7 8 9 10 11 12; do
    echo "xend-vfb real-Xen harness: fbcon line $n  ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789" > /dev/tty1
done
say "TEXT written to tty1"

# /dev/fb0 and the kernel's vfb-0 and vkbd-0 states, as one word list.
devstate() {
    if [ -e /dev/fb0 ]; then fb0=present; else fb0=gone; fi
    echo "fb0=$fb0 vfb-0=$(cat /sys/bus/xen/devices/vfb-0/state 2>/dev/null) vkbd-0=$(cat /sys/bus/xen/devices/vkbd-0/state 2>/dev/null)"
}

# Hot-plugged displays: report /dev/fb1 coming and going; and the state of fb0,
# vfb-0 and vkbd-0 whenever it changes.
(
    prev=gone
    dev=
    while :; do
        now=$(devstate)
        if [ "$now" != "$dev" ]; then
            say "DEV $now at $(cut -d' ' -f1 /proc/uptime)s"
            dev=$now
        fi
        if [ -e /dev/fb1 ]; then now=present; else now=gone; fi
        if [ "$now" != "$prev" ]; then
            if [ $now = present ]; then
                sleep 0.5   # let sysfs settle
                G1=/sys/class/graphics/fb1
                say "FB1 present name=$(cat $G1/name) size=$(cat $G1/virtual_size) vfb-1 state=$(cat /sys/bus/xen/devices/vfb-1/state 2>/dev/null) at $(cut -d' ' -f1 /proc/uptime)s"
            else
                say "FB1 gone; xen devices: $(ls /sys/bus/xen/devices | tr '\n' ' ')at $(cut -d' ' -f1 /proc/uptime)s"
            fi
            prev=$now
        fi
        sleep 0.25
    done
) &

# Frames for the redraw test: black, and noise (the dom0 side watches the
# centre pixel change).
SIZE=$(( $(cat $G/stride) * $(cut -d, -f2 $G/virtual_size) ))
dd if=/dev/zero of=/tmp/black bs=$SIZE count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/white bs=$SIZE count=1 2>/dev/null

# redraw [PAUSE_US]: flat out, or pausing PAUSE_US microseconds after each frame.
redraw() {
    pause=${1:-0}
    say "REDRAW start pause=${pause}us at $(cut -d' ' -f1 /proc/uptime)s"
    start=$(date +%s); frames=0
    while [ $(( $(date +%s) - start )) -lt $REDRAW_SECS ]; do
        cat /tmp/white > /dev/fb0
        [ "$pause" = 0 ] || usleep "$pause"
        cat /tmp/black > /dev/fb0
        [ "$pause" = 0 ] || usleep "$pause"
        frames=$((frames + 2))
        [ $((frames % 100)) -eq 0 ] && say "REDRAW frames=$frames at $(cut -d' ' -f1 /proc/uptime)s"
    done
    say "REDRAW done pause=${pause}us frames=$frames secs=$(( $(date +%s) - start ))"
}

# xen-kbdfront registers its input devices once vkbd is Connected.
keyboard() {
    for e in /sys/class/input/event*; do
        name=$(cat "$e/device/name" 2>/dev/null)
        case $name in *[Kk]eyboard*) basename "$e"; return ;; esac
    done
}
kbd=
i=0
while [ -z "$kbd" ] && [ $i -lt 1200 ]; do
    kbd=$(keyboard)
    [ -n "$kbd" ] || sleep 0.25
    i=$((i + 1))
done
for e in /sys/class/input/event*; do say "INPUT $(basename "$e") $(cat "$e/device/name" 2>/dev/null)"; done
say "READY keyboard=${kbd:-none}"
if [ -n "$kbd" ]; then
    # struct input_event on x86_64: 16 bytes of time, u16 type, u16 code, s32 value.
    # EV_KEY (1), KEY_R (19), pressed (1): ...0100 1300 01000000 (KEY_P is 25,
    # 0x19: a redraw paced at about 5 frames/s; KEY_B is 48, 0x30: reboot).  One event per
    # dd from a descriptor held open (a pipe from hexdump would sit in its buffer).
    (
        exec 3< "/dev/input/$kbd"
        while :; do
            hex=$(dd bs=24 count=1 <&3 2>/dev/null | hexdump -v -e '24/1 "%02x"')
            if [ -z "$hex" ]; then
                # The keyboard went (its vkbd was removed and written again, e.g. by
                # the daemon's re-probe after a plain xl restore): read the new one.
                sleep 1
                kbd=$(keyboard)
                [ -z "$kbd" ] || exec 3< "/dev/input/$kbd"
                continue
            fi
            echo "DOMU-EV $hex"
            case $hex in
                *0100130001000000) redraw & ;;
                *0100190001000000) redraw 200000 & ;;
                *01002d0001000000) say "KEYSTATE x $(devstate)" ;;
                *0100300001000000) say "REBOOTING itself"; reboot -f ;;
            esac
        done
    ) &
fi
# No shell on the console: its prompt would land in the middle of the lines above.
exec sleep 2147483647
