"""What shows a guest's screen: the seam (`screen`), and the displays behind it.

The backend's `Screen` holds the guest's pixels; displays read it through
`IScreen`, watch it through `IScreenObserver` and send input back through
`IInputSink`.  The displays are the VNC server (`xend_vfb.rfb`) and an SDL
window (`sdl`); `region` is the dirty-rectangle bookkeeping both use.
"""
