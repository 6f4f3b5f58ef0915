/*
 * LD_PRELOAD stub that lets Debian's C xenstored run without a hypervisor.
 *
 * xenstored talks to Xen through libxenctrl (domain info), libxenevtchn
 * (its VIRQ and per-domain event channels) and libxengnttab (mapping a
 * guest's xenstore ring), and reads /proc/xen/xsd_port and xsd_kva at start.
 * This library answers those calls so that only its Unix socket is used:
 * every domain "exists", event channels never fire, grant maps return a
 * private page, and the /proc/xen files are small in-memory files.
 *
 * Written for xend-vfb from the library interfaces in Debian's libxen-dev.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

/* Opaque handles: the library only hands out pointers, so any unique
 * address will do. */
static int fake_xc_handle;
static int fake_gnttab_handle;

struct xenevtchn_handle {
    int fd;                /* an eventfd nobody ever signals */
};

static uint32_t next_port = 1;

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    return (xc_interface *)&fake_xc_handle;
}

int xc_interface_close(xc_interface *xch)
{
    return 0;
}

/* Report exactly the domain asked about as present and running. */
int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                      unsigned int max_doms, xc_dominfo_t *info)
{
    if (max_doms == 0)
        return 0;
    memset(info, 0, sizeof(*info));
    info->domid = first_domid;
    return 1;
}

static xenevtchn_handle *new_evtchn_handle(int fd)
{
    xenevtchn_handle *xce = calloc(1, sizeof(*xce));

    if (xce == NULL)
        return NULL;
    xce->fd = fd;
    return xce;
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
                                 unsigned open_flags)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    return fd < 0 ? NULL : new_evtchn_handle(fd);
}

xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger,
                                   int fd, unsigned open_flags)
{
    return new_evtchn_handle(fd);
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    if (xce != NULL) {
        close(xce->fd);
        free(xce);
    }
    return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->fd;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
                                                     uint32_t domid,
                                                     evtchn_port_t remote_port)
{
    return next_port++;
}

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce,
                                              unsigned int virq)
{
    return next_port++;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    return -1;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger,
                                 unsigned open_flags)
{
    return (xengnttab_handle *)&fake_gnttab_handle;
}

int xengnttab_close(xengnttab_handle *xgt)
{
    return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    return 0;
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid,
                              uint32_t ref, int prot)
{
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return page == MAP_FAILED ? NULL : page;
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address,
                    uint32_t count)
{
    return munmap(start_address, (size_t)count * 4096);
}

/* An in-memory file holding `text`, padded to one page so it can be
 * mapped as xenstored maps xsd_kva. */
static int memory_file(const char *name, const char *text)
{
    int fd = memfd_create(name, MFD_CLOEXEC);

    if (fd < 0)
        return -1;
    if (ftruncate(fd, 4096) < 0 ||
        pwrite(fd, text, strlen(text), 0) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int open(const char *path, int flags, ...)
{
    static int (*real_open)(const char *, int, ...);
    mode_t mode = 0;

    if (strcmp(path, "/proc/xen/xsd_port") == 0)
        return memory_file("xsd_port", "0");
    if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        return memory_file("xsd_kva", "");

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;

        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (real_open == NULL)
        real_open = dlsym(RTLD_NEXT, "open");
    return real_open(path, flags, mode);
}
