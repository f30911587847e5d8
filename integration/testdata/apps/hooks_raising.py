"""Hooks that all raise (stdlib only): the worker must log each traceback and keep serving."""


class HookBoom(Exception):
    pass


def on_starting(server):
    raise HookBoom("hook on_starting boom")


def post_fork(worker):
    raise HookBoom("hook post_fork boom")


def post_worker_init(worker):
    raise HookBoom("hook post_worker_init boom")


def pre_request(environ):
    raise HookBoom("hook pre_request boom")


def post_request(environ, status):
    raise HookBoom("hook post_request boom")


def worker_exit(worker):
    raise HookBoom("hook worker_exit boom")
