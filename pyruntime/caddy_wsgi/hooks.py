"""Worker hooks: a module of hook functions (config hooks), or a Gunicorn config file
whose hooks are called with Gunicorn's signatures and objects (GunicornHooks)."""

import importlib
import os
import sys
import traceback


def load_hooks(name, dump_file=lambda: None):
    """The hooks object for config hooks, or None. dump_file() is the worker's stack-dump
    file when worker_abort is installed (post_worker_init)."""
    if not name:
        return None
    if name.startswith(('python:', 'file:')) or name.endswith('.py') or os.sep in name:
        return GunicornHooks(name, dump_file)
    return importlib.import_module(name)


def hook(hooks, name):
    return getattr(hooks, name, None) if hooks is not None else None


def call_hook(name, fn, *args):
    """Run a hook; its exception is logged (Caddy merges the traceback into one entry)
    and never breaks the worker or the request."""
    try:
        fn(*args)
    except Exception:
        try:
            sys.stderr.write('caddy-wsgi worker %d: hook %s raised an exception\n%s'
                             % (os.getpid(), name, traceback.format_exc()))
        except Exception:
            pass


def run_hook(hooks, name, *args):
    fn = hook(hooks, name)
    if fn is not None:
        call_hook(name, fn, *args)


class GunicornHooks:
    """A Gunicorn config file (a path, file:PATH or python:MODULE) as a hooks module: it is
    executed as Gunicorn executes it, and its hooks are called with Gunicorn's signatures
    and objects that have the attributes hooks use (server.log, worker.pid, req.path...)."""

    def __init__(self, spec, dump_file=lambda: None):
        self._dump_file = dump_file
        if spec.startswith('python:'):
            mod = importlib.import_module(spec[len('python:'):])
        else:
            import importlib.machinery
            import importlib.util
            path = spec[len('file:'):] if spec.startswith('file:') else spec
            loader = importlib.machinery.SourceFileLoader('__config__', path)
            mod = importlib.util.module_from_spec(
                importlib.util.spec_from_file_location('__config__', path, loader=loader))
            sys.modules['__config__'] = mod
            loader.exec_module(mod)
        names = vars(mod)
        self._cfg = GunicornCfg(names)
        self._server = self._worker = None
        fns = {k: names.get(k) for k in ('on_starting', 'post_fork', 'post_worker_init',
                                         'pre_request', 'post_request', 'worker_exit',
                                         'worker_abort')}
        self._fns = {k: v for k, v in fns.items() if callable(v)}
        # Only the hooks the file defines exist here (the worker checks with getattr),
        # but post_worker_init always does: it keeps the worker object for the others.
        for k in self._fns:
            if k not in ('post_worker_init', 'worker_abort'):
                setattr(self, k, getattr(self, '_' + k))
        if 'post_request' in self._fns:
            self._post_request_args = arity(self._fns['post_request'], 4)

    def _server_for(self, info):
        if self._server is None:
            self._server = GunicornProcess(info, self._cfg)
        return self._server

    def _worker_for(self, info):
        if self._worker is None or self._worker.pid != os.getpid():
            self._worker = GunicornProcess(info, self._cfg)
        return self._worker

    def _on_starting(self, info):
        self._fns['on_starting'](self._server_for(info))

    def _post_fork(self, info):
        self._fns['post_fork'](self._server_for(info), self._worker_for(info))

    def post_worker_init(self, info):
        worker = self._worker_for(info)
        if 'worker_abort' in self._fns:
            self._install_abort(worker)
        if 'post_worker_init' in self._fns:
            self._fns['post_worker_init'](worker)

    def _install_abort(self, worker):
        """worker_abort(worker) runs when Caddy times out a request (its SIGUSR1 before the
        kill), after faulthandler wrote the stacks; the worker is killed just after."""
        import faulthandler
        import signal
        fn = self._fns['worker_abort']
        dump_file = self._dump_file()
        try:
            # faulthandler's C handler stays first (it dumps even when Python is stuck),
            # then chains to this one, which runs at the next bytecode of the main thread.
            if dump_file is not None:
                faulthandler.unregister(signal.SIGUSR1)
            signal.signal(signal.SIGUSR1, lambda *_: call_hook('worker_abort', fn, worker))
            if dump_file is not None:
                faulthandler.register(signal.SIGUSR1, file=dump_file, all_threads=True, chain=True)
        except (ValueError, OSError):  # not the main thread
            pass

    def _pre_request(self, environ):
        self._fns['pre_request'](self._worker, GunicornRequest(environ))

    def _post_request(self, environ, status):
        args = (self._worker, GunicornRequest(environ), environ, GunicornResponse(status))
        self._fns['post_request'](*args[:self._post_request_args])

    def _worker_exit(self, info):
        self._fns['worker_exit'](self._server_for(info), self._worker_for(info))


def arity(fn, most):
    """How many positional arguments fn takes, up to most (Gunicorn's post_request takes
    2, 3 or 4)."""
    import inspect
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return most
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return most
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(n, most)


class GunicornCfg:
    """server.cfg / worker.cfg: the config file's settings as attributes; a setting the
    file does not set is None."""

    def __init__(self, names):
        self.__dict__.update((k, v) for k, v in names.items()
                             if not k.startswith('_') and not callable(v))

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return None


class GunicornProcess:
    """What Gunicorn hooks receive as server and worker."""

    def __init__(self, info, cfg):
        self.pid = info.pid
        self.ppid = info.ppid
        self.app_spec = info.app_spec
        self.threads = info.threads
        self.booted_at = info.booted_at
        self.cfg = cfg
        self.timeout = cfg.timeout
        self.num_workers = cfg.workers
        self.alive = self.booted = True
        self._log = None

    @property
    def log(self):
        """Gunicorn's error log (logger gunicorn.error), written to stderr: Caddy's log."""
        if self._log is None:
            import logging
            log = logging.getLogger('gunicorn.error')
            if not log.handlers:
                h = logging.StreamHandler(sys.stderr)
                h.setFormatter(logging.Formatter('[%(levelname)s] %(message)s'))
                log.addHandler(h)
                log.propagate = False
                level = str(self.cfg.loglevel or 'info').upper()
                log.setLevel({'WARN': 'WARNING', 'CRITICAL': 'CRITICAL'}.get(level, level)
                             if level in ('DEBUG', 'INFO', 'WARNING', 'WARN', 'ERROR', 'CRITICAL')
                             else 'INFO')
            self._log = log
        return self._log


class GunicornRequest:
    """What Gunicorn's pre_request and post_request receive as req, from the environ."""

    def __init__(self, environ):
        self.environ = environ
        self.method = environ.get('REQUEST_METHOD')
        self.path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
        self.query = environ.get('QUERY_STRING', '')
        self.uri = environ.get('RAW_URI') or (self.path + ('?' + self.query if self.query else ''))
        self.scheme = environ.get('wsgi.url_scheme')
        self.remote_addr = environ.get('REMOTE_ADDR')
        self.peer_addr = (self.remote_addr, environ.get('REMOTE_PORT'))
        proto = environ.get('SERVER_PROTOCOL', 'HTTP/1.1')
        try:
            major, _, minor = proto.split('/', 1)[1].partition('.')
            self.version = (int(major), int(minor or 0))
        except (IndexError, ValueError):
            self.version = (1, 1)

    @property
    def headers(self):
        """(NAME, value) pairs, names upper-case as Gunicorn gives them."""
        env = self.environ
        out = [(k[5:].replace('_', '-'), v) for k, v in env.items() if k.startswith('HTTP_')]
        for k in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            if env.get(k):
                out.append((k.replace('_', '-'), env[k]))
        return out


class GunicornResponse:
    """What post_request receives as resp: the status."""

    def __init__(self, status):
        self.status = status
        try:
            self.status_code = int(str(status).split(None, 1)[0])
        except (IndexError, ValueError):
            self.status_code = None
