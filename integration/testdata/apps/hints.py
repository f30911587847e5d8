"""103 Early Hints for the integration tests: `application` (WSGI, wsgi.early_hints) and
`asgi_app` (ASGI, http.response.early_hint and http.response.informational). Both send two
103s, then a 200 whose headers hold no Link of their own: a Link in the final response
would mean the hints leaked into it."""

LINKS = [b'</style.css>; rel=preload; as=style', b'</app.js>; rel=preload; as=script']


def application(environ, start_response):
    environ['wsgi.early_hints']([('Link', LINKS[0].decode())])
    environ['wsgi.early_hints']([('Link', LINKS[1].decode()), ('X-Hint', 'two')])
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'final:' + environ['SERVER_PROTOCOL'].encode()]


async def asgi_app(scope, receive, send):
    if scope['type'] != 'http':
        return
    await send({'type': 'http.response.early_hint', 'links': LINKS[:1]})
    await send({'type': 'http.response.informational', 'status': 103,
                'headers': [(b'link', LINKS[1]), (b'x-hint', b'two')]})
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': b'final:' + scope['http_version'].encode()})
