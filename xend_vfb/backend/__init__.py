"""The backend side of vfb and vkbd devices: one process per domain.

`device.BackendDevice` is the one XenbusState machine every device class
shares, driven by a class's `device.DeviceOps` table (`vfb.VfbOps`,
`vkbd.VkbdOps`); `service.DomainBackend` serves one domain's devices;
`main` is the `xend-vfb-backend` program, `control` its control socket, and
`zygote` the pre-imported image the daemon forks backends from.
"""
