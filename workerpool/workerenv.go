package workerpool

import (
	"os"
	"path/filepath"
	"strings"
)

func absPaths(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if a, err := filepath.Abs(p); err == nil {
			p = a
		}
		out = append(out, p)
	}
	return out
}

// basicEnv is what a worker inherits even with env_inherit off: what programs need to
// run, nothing that is a secret.
var basicEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

// workerEnv is Caddy's environment (as Gunicorn passes its own, or the part EnvInherit
// allows), the venv's, then Env.
func workerEnv(cfg Config) []string {
	env := os.Environ()
	if len(cfg.EnvInherit) > 0 {
		keep := map[string]bool{}
		for _, k := range basicEnv {
			keep[k] = true
		}
		for _, k := range cfg.EnvInherit {
			if k != "off" {
				keep[k] = true
			}
		}
		kept := env[:0:0]
		for _, kv := range env {
			if k, _, _ := strings.Cut(kv, "="); keep[k] {
				kept = append(kept, kv)
			}
		}
		env = kept
	}
	if cfg.Venv != "" {
		venv, _ := filepath.Abs(cfg.Venv)
		env = setEnv(env, "VIRTUAL_ENV", venv)
		env = setEnv(env, "PATH", filepath.Join(venv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	for k, v := range cfg.Env {
		env = setEnv(env, k, v)
	}
	return env
}

func setEnv(env []string, key, value string) []string {
	prefix := key + "="
	for i, kv := range env {
		if strings.HasPrefix(kv, prefix) {
			env[i] = prefix + value
			return env
		}
	}
	return append(env, prefix+value)
}
