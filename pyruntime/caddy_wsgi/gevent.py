"""The gevent worker class: the sync worker with the stdlib patched by gevent before the
app is imported, so each channel is served by a greenlet (threading.Thread is patched)
and an app that waits on I/O yields to the others."""

import socket

from .sync import SyncWorker


class GeventWorker(SyncWorker):
    """worker_class gevent (never with preload: gevent must patch in each worker)."""

    def prepare(self, boot_sock):
        """Patch, then re-make the boot channel as a cooperative socket."""
        from gevent import monkey
        monkey.patch_all()
        return socket.socket(fileno=boot_sock.detach())
