"""xenstore for xend-vfb: one interface (`IXenstore`), one client over pyxs's
wire format, the path helpers, and the embedded xenstored launcher."""

from xend_vfb.xenstore.client import Xenstore
from xend_vfb.xenstore.connect import connect, defaultPath
from xend_vfb.xenstore.embedded import EmbeddedXenstored
from xend_vfb.xenstore.interfaces import ITransaction, IWatch, IXenstore, IXenstoreOps

__all__ = [
    "IXenstore",
    "IXenstoreOps",
    "ITransaction",
    "IWatch",
    "Xenstore",
    "connect",
    "defaultPath",
    "EmbeddedXenstored",
]
