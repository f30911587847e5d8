// Package caddywsgi is what `xcaddy build --with github.com/caddy-wsgi/caddy-wsgi`
// imports: it registers the `wsgi` HTTP handler (package caddymodule).
package caddywsgi

import _ "github.com/caddy-wsgi/caddy-wsgi/caddymodule"
