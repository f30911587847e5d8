"""Hooks for the lifecycle tests (stdlib only): each hook leaves a marker file in
MARKER_DIR named <hook>-<pid>, holding "<pid> <ppid> <worker.pid or ->" (post_request appends
one line per request: "<PATH_INFO> <status>"). pre_request sets HOOKS_PRE_REQUEST in the
environ, which the lifecycle app echoes.
"""
import os

MARKER_DIR = os.environ.get("MARKER_DIR", "")


def _write(name, content, append=False):
    if not MARKER_DIR:
        return
    path = os.path.join(MARKER_DIR, name)
    if append:
        with open(path, "a") as f:
            f.write(content)
        return
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)


def _ids(worker=None):
    wpid = getattr(worker, "pid", None) if worker is not None else None
    return "%d %d %s" % (os.getpid(), os.getppid(), "-" if wpid is None else wpid)


def on_starting(server):
    _write("on_starting-%d" % os.getpid(), _ids())


def post_fork(worker):
    _write("post_fork-%d" % os.getpid(), _ids(worker))


def post_worker_init(worker):
    _write("post_worker_init-%d" % os.getpid(), _ids(worker))


def pre_request(environ):
    environ["HOOKS_PRE_REQUEST"] = "set-by-hook"
    _write("pre_request-%d" % os.getpid(), "%s\n" % environ.get("PATH_INFO"), append=True)


def post_request(environ, status):
    _write("post_request-%d" % os.getpid(), "%s %s\n" % (environ.get("PATH_INFO"), status), append=True)


def worker_exit(worker):
    _write("worker_exit-%d" % os.getpid(), _ids(worker))
