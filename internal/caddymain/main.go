// Command caddymain is the main xcaddy generates, with our plugin (less Caddy's standard
// modules, which are Caddy's to port): scripts/cross-build.sh links it for the other
// platforms to check that the plugin links and registers there.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddy-wsgi/caddy-wsgi"
)

func main() { caddycmd.Main() }
