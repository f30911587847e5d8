"""Process start: main(argv), the config Caddy passes, the app spec, and the choice of the
worker class (imported only when chosen: WSGI workers never import asyncio)."""

import ast
import importlib
import json
import os
import socket
import sys
import traceback

from .platform import (
    close_inherited, raise_mmap_threshold, raise_nofile, redirect_stdin, watch_parent)
from .process import boot_failed


def load_app(spec):
    """Resolve `module`, `module:attr.path`, `module:factory()` or `module:factory(literals)`."""
    module_name, sep, expr = spec.partition(':')
    if not sep:
        expr = 'application'
    if not module_name or not expr.strip():
        raise ValueError('invalid app spec %r: expected module:callable' % spec)
    try:
        node = ast.parse(expr.strip(), mode='eval').body
    except SyntaxError:
        raise ValueError('invalid app spec %r: cannot parse %r' % (spec, expr))
    call = None
    if isinstance(node, ast.Call):
        call = node
        node = node.func
    path = _dotted(node, spec)
    args, kwargs = _literal_args(call, spec) if call is not None else (None, None)
    obj = importlib.import_module(module_name)
    for i, name in enumerate(path):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AttributeError('app spec %r: %s has no attribute %r'
                                 % (spec, '.'.join([module_name] + path[:i]), name))
    if args is not None:
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise TypeError('app spec %r resolved to %r, which is not callable' % (spec, obj))
    return obj


def _dotted(node, spec):
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ValueError('invalid app spec %r: expected a dotted name' % spec)
    names.append(node.id)
    return names[::-1]


def _literal_args(call, spec):
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise ValueError('**kwargs')
            kwargs[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise ValueError('invalid app spec %r: factory arguments must be literals' % spec)
    return args, kwargs


def parse_config(text):
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError('config must be a JSON object')
    config = {
        'threads': config.get('threads', 1),
        'multiprocess': config.get('multiprocess', False),
        'server_software': config.get('server_software', 'caddy-wsgi'),
        'pythonpath': config.get('pythonpath') or [],
        'dump_fd': config.get('dump_fd'),
        'hooks': config.get('hooks') or '',
        'worker_class': config.get('worker_class') or 'sync',
        'lifespan': config.get('lifespan') or 'auto',
        'ring': config.get('ring') is True,
    }
    if config['lifespan'] not in ('auto', 'on', 'off'):
        raise ValueError('config lifespan must be auto, on or off')
    if config['worker_class'] not in ('sync', 'gevent', 'asgi'):
        raise ValueError('config worker_class must be sync, gevent or asgi')
    if config['dump_fd'] is not None and type(config['dump_fd']) is not int:
        raise ValueError('config dump_fd must be an int')
    if type(config['threads']) is not int or config['threads'] < 1:
        raise ValueError('config threads must be an int >= 1')
    if not isinstance(config['pythonpath'], list) or not all(
            isinstance(p, str) for p in config['pythonpath']):
        raise ValueError('config pythonpath must be a list of str')
    return config


def start_process(argv, mode):
    """Common start of a worker or zygote -> (spec, config, boot socket)."""
    raise_mmap_threshold()
    redirect_stdin()
    if sys.stdout is not None:  # print() lines must reach Caddy's log as they happen
        sys.stdout.reconfigure(line_buffering=True)
    spec, config_text = argv[1], argv[2]
    sys.argv = [mode]
    try:
        boot_sock = socket.socket(fileno=3)
    except OSError as e:
        sys.stderr.write('caddy-wsgi: no channel on fd 3: %s\n' % e)
        os._exit(3)
    try:
        config = parse_config(config_text)
        sys.path[:0] = [os.getcwd()] + config['pythonpath']
    except BaseException:
        boot_failed(boot_sock, traceback.format_exc())
    # Ours: fds 3..3+threads-1 (channels) and the dump pipe after them (worker), or fds 3
    # and 4 (zygote).
    close_inherited(5 if mode == 'caddy-wsgi-zygote' else 3 + config['threads'] + 1)
    if config['worker_class'] != 'sync':
        raise_nofile()
    if mode == 'caddy-wsgi-worker' and not sys.platform.startswith('linux'):
        watch_parent()  # a zygote is never busy: EOF on its control channel ends it
    return spec, config, boot_sock


def worker_class(name):
    """The Worker subclass for config worker_class."""
    if name == 'asgi':
        from .asgi.worker import AsgiWorker
        return AsgiWorker
    if name == 'gevent':
        from .gevent import GeventWorker
        return GeventWorker
    from .sync import SyncWorker
    return SyncWorker


def main(argv):
    if len(argv) != 3 or argv[0] not in ('caddy-wsgi-worker', 'caddy-wsgi-zygote'):
        sys.stderr.write('usage: caddy-wsgi-worker|caddy-wsgi-zygote <app spec> <config JSON>\n')
        os._exit(2)
    spec, config, boot_sock = start_process(argv, argv[0])
    try:
        worker = worker_class(config['worker_class'])(spec, config)
    except BaseException:
        boot_failed(boot_sock, traceback.format_exc())
    if argv[0] == 'caddy-wsgi-zygote':
        from .zygote import Zygote
        Zygote(worker, boot_sock).run()
    else:
        worker.boot(boot_sock)
