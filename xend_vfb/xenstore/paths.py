"""Path helpers named after the xenstore place they build (REFERENCE.md section 3)."""

__all__ = [
    "domainPath",
    "frontendPath",
    "backendPath",
    "backendDomainPath",
    "privatePath",
    "PRIVATE_ROOT",
    "GENERATION_KEY",
    "POWER_ROOT",
    "powerRequestPath",
]

#: Toolstack-private state (device records, secrets): owned by domain 0, no access
#: for guests.  libxl keeps the same kind of record under /libxl.
PRIVATE_ROOT = "/xend-vfb"
#: Power requests from VNC viewers (xvp), one node per domain, written by its backend
#: and taken (read and removed) by the daemon.
POWER_ROOT = f"{PRIVATE_ROOT}/power"


def domainPath(domid: int) -> str:
    """The guest's home: /local/domain/D."""
    return f"/local/domain/{domid}"


def frontendPath(domid: int, devClass: str, devid: int) -> str:
    """The guest's side of a device: /local/domain/D/device/C/N."""
    return f"/local/domain/{domid}/device/{devClass}/{devid}"


def backendDomainPath(domid: int, devClass: str, backendDomid: int = 0) -> str:
    """All of one guest's devices of a class in the backend domain."""
    return f"/local/domain/{backendDomid}/backend/{devClass}/{domid}"


def backendPath(domid: int, devClass: str, devid: int, backendDomid: int = 0) -> str:
    """The backend's side of a device: /local/domain/0/backend/C/D/N."""
    return f"{backendDomainPath(domid, devClass, backendDomid)}/{devid}"


def privatePath(domid: int, devClass: str | None = None, devid: int | None = None) -> str:
    """Toolstack-private record of a domain, or of one of its devices."""
    path = f"{PRIVATE_ROOT}/{domid}"
    if devClass is not None:
        path += f"/device/{devClass}"
        if devid is not None:
            path += f"/{devid}"
    return path


#: The backend-area key naming this instance of the area: a fresh random value each
#: time the areas are written, so that a backend can tell the area it serves from
#: one written at the same path after it (remove then create, reboot, restore) and
#: never writes its findings about one into the other.  Random, not a counter: a
#: counter would start again for a new domain given the same id.
GENERATION_KEY = "generation"


def powerRequestPath(domid: int) -> str:
    """Where domain D's backend leaves a viewer's power request: /xend-vfb/power/D."""
    return f"{POWER_ROOT}/{domid}"
