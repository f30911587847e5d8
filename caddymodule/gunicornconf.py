"""Reads a Gunicorn config file as Gunicorn does and prints what it defines as JSON.

`caddy wsgi-server -c FILE` runs this with the app's interpreter: the file is executed
(so it may import and compute), then every public name it leaves behind is reported:
plain values under "settings", functions and classes under "callables". Which names
are Gunicorn settings is decided in Go. The file's own prints go to stderr; the JSON goes
to the original stdout. Standard library only, Python 3.9+.
"""
import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import traceback
import types


def load(spec):
    if spec.startswith('python:'):
        return vars(importlib.import_module(spec[len('python:'):]))
    path = spec[len('file:'):] if spec.startswith('file:') else spec
    if not os.path.exists(path):
        raise FileNotFoundError('%s does not exist' % path)
    # As Gunicorn: any file name works, the module is __config__.
    loader = importlib.machinery.SourceFileLoader('__config__', path)
    mod_spec = importlib.util.spec_from_file_location('__config__', path, loader=loader)
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules['__config__'] = mod
    loader.exec_module(mod)
    return vars(mod)


def plain(v, depth=0):
    """v as JSON data, or None when it is not plain data."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if depth < 4 and isinstance(v, (list, tuple, set, frozenset)):
        out = [plain(x, depth + 1) for x in v]
        return out if all(x is not None or y is None for x, y in zip(out, v)) else None
    if depth < 4 and isinstance(v, dict):
        out = {str(k): plain(x, depth + 1) for k, x in v.items()}
        return out if all(out[str(k)] is not None or x is None for k, x in v.items()) else None
    return None


def where(exc, spec):
    """The line of the config file where exc was raised (its last frame there)."""
    path = os.path.abspath(spec[len('file:'):] if spec.startswith('file:') else spec)
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == path:
            line = frame.lineno
    return line


def main():
    spec = sys.argv[1]
    out = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)  # the file's prints go to stderr, as Gunicorn's would go to the terminal
    sys.stdout = sys.stderr
    result = {}
    try:
        names = load(spec)
    except SyntaxError as e:
        result['error'] = 'line %s: %s: %s' % (e.lineno, type(e).__name__, e.msg)
        if e.text:
            result['error'] += ': ' + e.text.strip()
    except BaseException as e:  # SystemExit too: the file must not end the read silently
        line = where(e, spec)
        msg = traceback.format_exception_only(type(e), e)[-1].strip()
        result['error'] = ('line %d: %s' % (line, msg)) if line else msg
        result['traceback'] = traceback.format_exc()
    else:
        settings, callables, other = {}, [], {}
        for k, v in names.items():
            if k.startswith('_') or isinstance(v, types.ModuleType):
                continue
            if callable(v):
                callables.append(k)
                continue
            p = plain(v)
            if p is None and v is not None:
                other[k] = repr(v)
            else:
                settings[k] = p
        result = {'settings': settings, 'callables': callables, 'other': other,
                  'python': sys.executable, 'version': '%d.%d' % sys.version_info[:2]}
    out.write(json.dumps(result))
    out.flush()


main()
