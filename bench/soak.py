"""Soak test of caddy-wsgi (not part of CI): steady load for a duration against a caddy whose
workers recycle every 50 requests (max_requests 50), with a config reload every 10 s
alternating between two configs (the wsgi block differs, so each reload starts a new pool
and drains the old one). Prints requests, failures, reloads and the RSS of caddy and of its
workers at the start, the middle and the end.

With --asgi, the same against the `asgi` directive (bench/apps/asgi_app.py), plus WebSocket
clients that echo messages back to back: a WebSocket that Caddy closes with 1012 (its worker
retired or the pool was replaced) reconnects and is counted apart; any other end is a
failure.

    python3 bench/soak.py --caddy /path/to/caddy [--minutes 10] [--clients 8] [--asgi]

Stdlib only; all traffic goes to 127.0.0.1. Exit status 1 when a request failed.
"""
import argparse
import base64
import http.client
import os
import struct
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def site_caddyfile(admin, port, body):
    """A Caddyfile: admin and port as the soak needs them, quiet logs, one site with body."""
    return """{
	admin 127.0.0.1:%d
	http_port %d
	log {
		level WARN
	}
}
http://127.0.0.1:%d {
%s}
""" % (admin, port, port, body)


def respond_caddyfile(admin, port, tag):
    return site_caddyfile(admin, port, """	header X-Config %s
	respond /hello "Hello, world!"
""" % tag)


def caddyfile(admin, port, python, tag, asgi=False):
    if asgi:
        return site_caddyfile(admin, port, """	asgi asgi_app:app {
		python %s
		chdir %s
		workers 2
		max_requests 2000
		max_requests_jitter 200
		env SOAK_CONFIG %s
		name soak
	}
""" % (python, APPS, tag))
    return site_caddyfile(admin, port, """	wsgi app:application {
		python %s
		chdir %s
		workers 2
		threads 1
		max_requests 50
		max_requests_jitter 10
		env SOAK_CONFIG %s
		name soak
	}
""" % (python, APPS, tag))


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            if fields[0] == "Z":
                continue
            children.setdefault(int(fields[1]), []).append(int(d))
        except (OSError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def snapshot(caddy_pid):
    ws = descendants(caddy_pid)
    return {"caddy_mib": rss_kib(caddy_pid) / 1024.0,
            "workers": len(ws),
            "workers_mib": sum(rss_kib(p) for p in ws) / 1024.0}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.failed = 0
        self.samples = []
        self.stop_at = float("inf")  # set when --reloads are done
        self.told_close = 0  # responses with Connection: close (the client reconnects)
        self.restarts = 0  # WebSockets closed with 1012 that reconnected

    def add(self, ok, what=""):
        with self.lock:
            self.total += 1
            if not ok:
                self.failed += 1
                if len(self.samples) < 10:
                    self.samples.append("%.1fs: %s" % (time.time() - START, what))


START = time.time()


class WebSocket:
    """A minimal RFC 6455 client (stdlib): text messages, masked frames, close codes."""

    def __init__(self, port, path="/ws"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (path, port, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("closed during the handshake")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError("handshake answered %r" % head.split(b"\r\n", 1)[0])

    def send(self, text):
        payload, mask = text.encode(), os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed without a close frame")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """-> the text of the next message; raises Closed(code) on a close frame."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        payload = self._read(n)
        if b0 & 0x0F == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            raise Closed(code)
        return payload.decode()

    def close(self):
        try:
            self.sock.sendall(struct.pack("!BB", 0x88, 0x82) + b"\0\0\0\0" + struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


class Closed(Exception):
    def __init__(self, code):
        Exception.__init__(self, "closed with %d" % code)
        self.code = code


def ws_client(port, deadline, stats):
    """Echo round trips on one WebSocket; reconnect after a 1012 (service restart)."""
    n = 0
    while time.time() < deadline:
        try:
            ws = WebSocket(port)
        except Exception as e:
            stats.add(False, "ws connect: %s: %s" % (type(e).__name__, e))
            time.sleep(0.1)
            continue
        try:
            while time.time() < deadline:
                n += 1
                msg = "echo %d" % n
                ws.send(msg)
                got = ws.recv()
                stats.add(got == msg, "ws echo %r, got %r" % (msg, got))
            ws.close()
        except Closed as e:
            ws.sock.close()
            if e.code == 1012:
                with stats.lock:
                    stats.restarts += 1
            else:
                stats.add(False, "ws: %s" % e)
        except Exception as e:
            ws.sock.close()
            stats.add(False, "ws: %s: %s" % (type(e).__name__, e))


def client(port, deadline, stats):
    """One keep-alive connection at a time, never retrying (as http.client, many
    service-to-service clients and load balancers behave): a request lost when a reload
    closes its connection counts as a failure."""
    conn = None
    while time.time() < min(deadline, stats.stop_at):
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/hello")
            resp = conn.getresponse()
            body = resp.read()
            ok = resp.status == 200 and body == b"Hello, world!"
            stats.add(ok, "status %d body %r" % (resp.status, body[:80]))
            if resp.will_close:
                with stats.lock:
                    stats.told_close += 1
                conn.close()
                conn = None
        except Exception as e:  # RemoteDisconnected, ConnectionResetError, ...: lost
            stats.add(False, "%s: %s" % (type(e).__name__, e))
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--caddy", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--reload-every", type=float, default=10)
    ap.add_argument("--reloads", type=int, default=0, help="stop after this many reloads (0: run --minutes)")
    ap.add_argument("--respond", action="store_true", help="plain Caddy (respond), for comparison")
    ap.add_argument("--asgi", action="store_true", help="the asgi directive, with WebSocket clients too")
    ap.add_argument("--ws-clients", type=int, default=8, help="with --asgi: WebSocket clients")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="caddy-wsgi-soak-")
    admin, port = free_port(), free_port()
    cfgs = []
    for tag in ("a", "b"):
        path = os.path.join(tmp, "Caddyfile." + tag)
        with open(path, "w") as f:
            f.write(respond_caddyfile(admin, port, tag) if args.respond else caddyfile(admin, port, args.python, tag, args.asgi))
        cfgs.append(path)
    env = dict(os.environ, HOME=tmp, XDG_DATA_HOME=os.path.join(tmp, "data"), XDG_CONFIG_HOME=os.path.join(tmp, "config"))
    log = open(os.path.join(tmp, "caddy.log"), "w")
    caddy = subprocess.Popen([args.caddy, "run", "--config", cfgs[0], "--adapter", "caddyfile"],
                             stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        # ready when /hello answers
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/hello")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("caddy did not come up; log in %s" % log.name)

        duration = args.minutes * 60
        global START
        START = time.time()
        deadline = START + duration
        stats = Stats()
        threads = [threading.Thread(target=client, args=(port, deadline, stats)) for _ in range(args.clients)]
        if args.asgi:
            threads += [threading.Thread(target=ws_client, args=(port, deadline, stats)) for _ in range(args.ws_clients)]
        for t in threads:
            t.start()
        time.sleep(min(5, duration / 10))
        snaps = {"start": snapshot(caddy.pid)}

        reloads = reload_failures = 0
        which = 1
        middle_at = START + duration / 2
        next_reload = START + args.reload_every
        while time.time() < deadline:
            if args.reloads and reloads >= args.reloads:
                deadline = time.time() + 0.5  # the clients stop after a last half second
                stats.stop_at = deadline
                break
            now = time.time()
            if "middle" not in snaps and now >= middle_at:
                snaps["middle"] = snapshot(caddy.pid)
            if now >= next_reload:
                next_reload += args.reload_every
                r = subprocess.run([args.caddy, "reload", "--config", cfgs[which], "--adapter", "caddyfile",
                                    "--address", "127.0.0.1:%d" % admin], capture_output=True, env=env, cwd=tmp,
                                   timeout=120)
                reloads += 1
                if r.returncode != 0:
                    reload_failures += 1
                    print("reload failed: %s" % r.stderr.decode(errors="replace")[-500:], file=sys.stderr)
                which = 1 - which
            if caddy.poll() is not None:
                raise SystemExit("caddy exited with %s; log in %s" % (caddy.returncode, log.name))
            time.sleep(0.2)
        for t in threads:
            t.join()
        snaps["end"] = snapshot(caddy.pid)
        elapsed = time.time() - START

        if args.asgi:
            print("soak (asgi): %.1f min, %d HTTP and %d WebSocket clients, max_requests 2000, a reload every %gs"
                  % (elapsed / 60, args.clients, args.ws_clients, args.reload_every))
        else:
            print("soak%s: %.1f min, %d non-retrying keep-alive clients, a reload every %gs"
                  % (" (respond)" if args.respond else " (wsgi, max_requests 50)", elapsed / 60, args.clients, args.reload_every))
        print("requests: %d (%.0f/s)" % (stats.total, stats.total / elapsed))
        print("failed: %d of %d requests over %d reloads" % (stats.failed, stats.total, reloads))
        print("responses with Connection: close (the client reconnected): %d" % stats.told_close)
        if args.asgi:
            print("WebSockets closed with 1012 (worker retired, pool replaced) and reconnected: %d" % stats.restarts)
        for s in stats.samples:
            print("  " + s)
        print("reloads: %d (%d failed)" % (reloads, reload_failures))
        for k in ("start", "middle", "end"):
            s = snaps.get(k)
            if s:
                print("RSS %-6s caddy %6.1f MiB, %d workers %6.1f MiB in all" % (k, s["caddy_mib"], s["workers"], s["workers_mib"]))
        with open(log.name) as f:
            errors = [l for l in f if '"level":"error"' in l]
        print("caddy error log entries: %d" % len(errors))
        for l in errors[:5]:
            print("  " + l.strip()[:300])
        return 1 if stats.failed or reload_failures else 0
    finally:
        caddy.send_signal(signal.SIGINT)
        try:
            caddy.wait(20)
        except subprocess.TimeoutExpired:
            caddy.kill()
        log.close()
        if os.environ.get("SOAK_KEEP"):
            print("files kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
