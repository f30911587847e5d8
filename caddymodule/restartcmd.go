package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "wsgi-restart",
		Usage: "[--pool <name>]... [--config <path> [--adapter <name>]] [--address <interface>]",
		Short: "Restart the Python workers of running pools, rolling, to deploy new code",
		Long: `
Deploys new application code: every worker of the named pools (all pools when no --pool
is given) is replaced, one at a time, through the admin API of the running Caddy; each
new worker has imported the code before the one it replaces stops taking requests, so
no request fails. ` + "`caddy reload`" + ` keeps the workers of an unchanged wsgi/asgi block
(and so the old code); this command is the deploy step (Gunicorn's kill -HUP).

If the new code fails to import, the restart stops there: the old workers keep serving,
and the command exits 1 with the last line of the traceback (the full traceback is in
Caddy's log).

The admin address is found as by ` + "`caddy reload`" + `: --address, else the admin address
of --config, else the default (localhost:2019).
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringArray("pool", nil, "Name of a pool to restart (repeatable; default: all)")
			cmd.Flags().String("address", "", "Address of the administration endpoint")
			cmd.Flags().StringP("config", "c", "", "Configuration file, to find the admin address in")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (with --config)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdWSGIRestart)
		},
	})
}

func cmdWSGIRestart(fl caddycmd.Flags) (int, error) {
	names, err := fl.GetStringArray("pool")
	if err != nil {
		return 1, err
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return 1, fmt.Errorf("finding the admin address: %w", err)
	}
	if len(names) == 0 {
		resp, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, "/wsgi/pools", nil, nil)
		if err != nil {
			return 1, fmt.Errorf("listing the pools: %w", err)
		}
		var pools []poolView
		err = json.NewDecoder(resp.Body).Decode(&pools)
		resp.Body.Close()
		if err != nil {
			return 1, fmt.Errorf("listing the pools: %w", err)
		}
		for _, p := range pools {
			if p.State == "serving" {
				names = append(names, p.Name)
			}
		}
		if len(names) == 0 {
			return 1, fmt.Errorf("no wsgi or asgi pool is running at %s", addr)
		}
	}
	for _, name := range names {
		resp, err := caddycmd.AdminAPIRequest(addr, http.MethodPost, "/wsgi/pools/"+url.PathEscape(name)+"/restart", nil, nil)
		if err != nil {
			return 1, fmt.Errorf("restarting pool %s: %s", name, apiErrorText(err))
		}
		var out struct {
			Restarted int `json:"restarted"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out)
		resp.Body.Close()
		fmt.Printf("%s: %d workers restarted\n", name, out.Restarted)
	}
	return 0, nil
}

// apiErrorText pulls the message out of an admin API error (`HTTP 500: {"error":"…"}`).
func apiErrorText(err error) string {
	s := err.Error()
	if i := strings.Index(s, "{"); i >= 0 {
		var body struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(s[i:]), &body) == nil && body.Error != "" {
			return body.Error
		}
	}
	return s
}
