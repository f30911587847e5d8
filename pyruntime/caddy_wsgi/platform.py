"""What differs between the systems a worker runs on: stdin, descriptors leaked by
Caddy's parent, the parent watch where there is no Pdeathsig, the open-files limit,
glibc's mmap threshold."""

import os
import threading
import time


def redirect_stdin():
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


def raise_mmap_threshold():
    """glibc serves a block over its mmap threshold (128 KiB at first) with mmap, and its
    free with munmap, until the first free of a larger mmapped block raises the threshold.
    The one-file runtime's compile did that by chance at boot; the package's small modules
    do not, so this does: without it, asyncio's 256 KiB read buffers and large bodies cost
    an mmap and a munmap each."""
    bytes(320 * 1024)


def close_inherited(keep_below, fd_dir='/proc/self/fd'):
    """Close descriptors Caddy's own parent leaked to it without close-on-exec: the app
    must not hold them (a worker running as another user least of all)."""
    try:
        fds = [int(name) for name in os.listdir(fd_dir)]
    except OSError:  # no /proc (macOS, FreeBSD): close the whole range
        os.closerange(keep_below, os.sysconf('SC_OPEN_MAX'))
        return
    for fd in fds:
        if fd >= keep_below:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor listdir itself used


def watch_parent(interval=1.0, sleep=time.sleep):
    """Where Caddy cannot set a parent-death signal (Pdeathsig is Linux-only), a daemon
    thread ends the worker once its parent is gone, even while the app is busy in a
    request (an idle worker already exits at EOF on its channels). The poll is one
    getppid() a second. `sleep` is taken before gevent patches time.sleep."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name='caddy-wsgi-parent-watch', daemon=True).start()


def raise_nofile():
    """ASGI and gevent workers hold up to thousands of channels: raise the soft limit on
    open files to the hard one (as Go does for Caddy), so the app can still open files and
    sockets above them. Go restores the original soft limit (often 1024) for children."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            highest_soft(lambda n: resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard)), soft, hard)
    except (ImportError, ValueError, OSError):
        pass  # keep the limit; Caddy checked that the channels fit in the hard one


def highest_soft(setlimit, soft, hard):
    """Set the soft limit as high as the system allows up to hard. macOS refuses its own
    "unlimited" hard limit (the cap is kern.maxfilesperproc, which the stdlib cannot
    read): there the highest accepted value is found by bisection, a few dozen calls."""
    try:
        setlimit(hard)
        return hard
    except (ValueError, OSError):
        pass
    lo, hi = soft, min(hard, 1 << 31) if hard >= 0 else 1 << 31  # lo accepted, hi refused
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            setlimit(mid)
            lo = mid
        except (ValueError, OSError):
            hi = mid
    setlimit(lo)
    return lo


def dup_high(fd):
    """A duplicate of fd numbered above every descriptor the dup2 targets may use."""
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 256)
