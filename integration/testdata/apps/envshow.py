"""GET /?k=A,B answers the workers' os.environ values of those keys as JSON (null when
unset): the env_file integration tests read what a worker started with."""
import json
import os
from urllib.parse import parse_qs


def application(environ, start_response):
    keys = parse_qs(environ['QUERY_STRING']).get('k', [''])[0].split(',')
    body = json.dumps({k: os.environ.get(k) for k in keys if k}).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]
