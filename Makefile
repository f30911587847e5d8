# The two commands of the README:
#   make run   builds caddy with our module (xcaddy, installed if needed) and serves
#              examples/hello on http://localhost:8080
#   make test  installs what the tests need (a venv with Flask, Django and Gunicorn from
#              PyPI), builds caddy, and runs every test (Go, Python, end-to-end)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
CADDY := .build/caddy
export CADDY_BIN := $(abspath $(CADDY))
export WSGI_TEST_VENV := $(abspath $(VENV))

.PHONY: run test caddy venv check bench autobahn
run: caddy
	$(CADDY) run --config examples/hello/Caddyfile --adapter caddyfile

caddy:
	scripts/build-caddy.sh $(CADDY)

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

# Autobahn|Testsuite (wstest, Python 2.7) for TestAutobahn, in ~/.cache/caddy-wsgi.
autobahn:
	scripts/install-autobahn.sh

check:
	gofmt -l . | tee /dev/stderr | (! read)
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

test: venv caddy autobahn check
	go test -race -count=1 -timeout 25m ./...

# The benchmark suite against the peers, WSGI and ASGI (about 16 minutes; see docs/benchmarks.md).
bench:
	bench/run.sh
