"""The in-memory importer: serves this package from the {path: source} bundle Caddy
writes on the worker's standard input, so nothing is written to disk.

The bootstrap executes this file on its own and calls install(bundle). get_source lets
linecache, and so tracebacks, show the runtime's source lines."""

import sys
from importlib.machinery import ModuleSpec


class BundleImporter:
    """A sys.meta_path finder and loader for the modules of a bundle. Paths are relative
    ('caddy_wsgi/asgi/http.py'), and become the modules' __file__."""

    def __init__(self, bundle):
        self.sources = bundle
        self.paths = {}  # module name -> path in the bundle
        for path in bundle:
            name = path[:-3].replace('/', '.')
            if name.endswith('.__init__'):
                name = name[:-len('.__init__')]
            self.paths[name] = path

    def find_spec(self, name, path=None, target=None):
        origin = self.paths.get(name)
        if origin is None:
            return None
        package = self.is_package(name)
        spec = ModuleSpec(name, self, origin=origin, is_package=package)
        spec.has_location = True  # __file__ is origin
        if package:
            spec.submodule_search_locations = [origin.rpartition('/')[0]]
        return spec

    def create_module(self, spec):
        return None  # the default module

    def exec_module(self, module):
        name = module.__spec__.name
        code = compile(self.get_source(name), self.paths[name], 'exec', dont_inherit=True)
        exec(code, module.__dict__)

    def is_package(self, name):
        return self.paths[name].endswith('/__init__.py')

    def get_source(self, name):
        return self.sources[self.paths[name]]

    def get_filename(self, name):
        return self.paths[name]


def install(bundle):
    """Put the bundle's importer first on sys.meta_path: the runtime's modules are ours,
    whatever the app's environment holds under the same names."""
    importer = BundleImporter(bundle)
    sys.meta_path.insert(0, importer)
    return importer
