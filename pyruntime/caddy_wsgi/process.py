"""How the process ends when it cannot go on: a protocol violation from Caddy or a boot
failure, with the standard streams flushed first (os._exit skips that)."""

import os
import sys

from .codec import encode_boot_error


def flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def violation(reason):
    """Caddy broke the protocol: the channel can no longer be trusted, so stop the worker."""
    try:
        sys.stderr.write('caddy-wsgi worker %d: protocol violation from Caddy: %s\n'
                         % (os.getpid(), reason))
    except Exception:
        pass
    flush_std()
    os._exit(4)


def boot_failed(sock, text):
    try:
        sys.stderr.write(text)
    except Exception:
        pass
    try:
        sock.sendall(encode_boot_error(text))
    except OSError:
        pass
    flush_std()
    os._exit(3)
