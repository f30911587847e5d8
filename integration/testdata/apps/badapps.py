"""Apps that break the WSGI response contract, one endpoint per case (stdlib only).

Each case is reached at /<case>; /good?tok=<t> answers 200 "good-<t>" (the follow-up
request of the keep-alive tests). Deliberately NOT wrapped in wsgiref.validate.
"""
from urllib.parse import parse_qs

TEXT = [("Content-Type", "text/plain")]


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def good(environ, start_response):
    body = ("good-" + _q(environ).get("tok", "")).encode()
    start_response("200 OK", TEXT + [("Content-Length", str(len(body)))])
    return [body]


# --- status and headers ------------------------------------------------------------------

def status_nonlatin(environ, start_response):
    start_response("200 \u20ac\u4e2d", TEXT)
    return [b"should-not-be-sent"]


def status_garbage(environ, start_response):
    start_response("OK then", TEXT)
    return [b"should-not-be-sent"]


def status_1xx(environ, start_response):
    start_response("103 Early Hints", TEXT)
    return [b"should-not-be-sent"]


def header_value_nonlatin(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad", "caf\u00e9 \u20ac \U0001f600")])
    return [b"should-not-be-sent"]


def header_name_nonlatin(environ, start_response):
    start_response("200 OK", TEXT + [("X-\u20ac", "v")])
    return [b"should-not-be-sent"]


def header_value_crlf(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad", "a\r\nX-Injected: 1")])
    return [b"should-not-be-sent"]


def header_value_lf(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad", "a\nX-Injected: 1")])
    return [b"should-not-be-sent"]


def header_value_cr(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad", "a\rX-Injected: 1")])
    return [b"should-not-be-sent"]


def header_value_nul(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad", "a\x00X-Injected: 1")])
    return [b"should-not-be-sent"]


def header_name_crlf(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad\r\nX-Injected", "1")])
    return [b"should-not-be-sent"]


def header_name_colon(environ, start_response):
    start_response("200 OK", TEXT + [("X-Injected: yes", "v")])
    return [b"should-not-be-sent"]


def header_name_space(environ, start_response):
    start_response("200 OK", TEXT + [("X Injected", "v")])
    return [b"should-not-be-sent"]


def header_not_str(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad", 42)])
    return [b"should-not-be-sent"]


def header_not_pair(environ, start_response):
    start_response("200 OK", TEXT + [("X-Bad", "v", "extra")])
    return [b"should-not-be-sent"]


def many_headers(environ, start_response):
    n = int(_q(environ).get("n", "10000"))
    body = b"many-headers-body"
    start_response("200 OK", TEXT + [("Content-Length", str(len(body)))]
                   + [("X-H-%d" % i, "value-%d" % i) for i in range(n)])
    return [body]


# --- the iterable ----------------------------------------------------------------------------

def return_none(environ, start_response):
    start_response("200 OK", TEXT)
    return None


def return_int(environ, start_response):
    start_response("200 OK", TEXT)
    return 42


def gen_str(environ, start_response):
    start_response("200 OK", TEXT)

    def gen():
        yield "a str, not bytes"
    return gen()


def gen_str_after_bytes(environ, start_response):
    start_response("200 OK", TEXT)

    def gen():
        yield b"first-block-ok\n"
        yield "then a str"
    return gen()


def list_of_str(environ, start_response):
    start_response("200 OK", TEXT)
    return ["should-not-be-sent"]


def no_start_response(environ, start_response):
    return [b"should-not-be-sent"]


def no_start_response_gen(environ, start_response):
    def gen():
        yield b"should-not-be-sent"
    return gen()


def start_twice(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("200 OK", TEXT + [("X-Second", "1")])
    return [b"should-not-be-sent"]


# --- Content-Length that lies ------------------------------------------------------------------

def cl_too_long(environ, start_response):
    """Declares 100, sends 10."""
    start_response("200 OK", TEXT + [("Content-Length", "100")])
    return [b"0123456789"]


def cl_too_long_stream(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "100")])

    def gen():
        yield b"01234"
        yield b"56789"
    return gen()


def cl_too_short(environ, start_response):
    """Declares 5, sends 50."""
    start_response("200 OK", TEXT + [("Content-Length", "5")])
    return [b"HELLO" + b"X" * 45]


def cl_too_short_stream(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "5")])

    def gen():
        yield b"HEL"
        yield b"LO" + b"X" * 20
        yield b"Y" * 25
    return gen()


def cl_invalid(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "abc")])
    return [b"invalid-length-body"]


def cl_negative(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "-5")])
    return [b"negative-length-body"]


def cl_duplicate(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "5"), ("Content-Length", "50")])
    return [b"HELLO" + b"X" * 45]


ROUTES = {
    "/good": good,
    "/status-nonlatin": status_nonlatin,
    "/status-garbage": status_garbage,
    "/status-1xx": status_1xx,
    "/header-value-nonlatin": header_value_nonlatin,
    "/header-name-nonlatin": header_name_nonlatin,
    "/header-value-crlf": header_value_crlf,
    "/header-value-lf": header_value_lf,
    "/header-value-cr": header_value_cr,
    "/header-value-nul": header_value_nul,
    "/header-name-crlf": header_name_crlf,
    "/header-name-colon": header_name_colon,
    "/header-name-space": header_name_space,
    "/header-not-str": header_not_str,
    "/header-not-pair": header_not_pair,
    "/many-headers": many_headers,
    "/return-none": return_none,
    "/return-int": return_int,
    "/gen-str": gen_str,
    "/gen-str-after-bytes": gen_str_after_bytes,
    "/list-of-str": list_of_str,
    "/no-start-response": no_start_response,
    "/no-start-response-gen": no_start_response_gen,
    "/start-twice": start_twice,
    "/cl-too-long": cl_too_long,
    "/cl-too-long-stream": cl_too_long_stream,
    "/cl-too-short": cl_too_short,
    "/cl-too-short-stream": cl_too_short_stream,
    "/cl-invalid": cl_invalid,
    "/cl-negative": cl_negative,
    "/cl-duplicate": cl_duplicate,
}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no route"]
    return handler(environ, start_response)
