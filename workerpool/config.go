// Package workerpool runs and supervises a pool of Python WSGI worker processes and
// dispatches requests to their idle threads. It has no Caddy imports: the Caddy module
// is a thin adapter over it.
package workerpool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Config describes a pool. Zero values take the documented defaults (see Defaults).
type Config struct {
	App        string            // module:callable, module, or module:factory(...)
	Python     string            // interpreter; default <Venv>/bin/python or python3 from PATH
	Venv       string            // virtualenv directory
	Chdir      string            // working directory, first entry of sys.path
	PythonPath []string          // more sys.path entries
	Env        map[string]string // added to the inherited environment
	Workers    int               // processes; default runtime.NumCPU()
	Threads    int               // threads (and channels) per process; default 1

	QueueTimeout    time.Duration // how long a request may wait for a free thread; default 30s
	MaxQueue        int           // waiting requests beyond this get ErrQueueFull; default 1000
	BootTimeout     time.Duration // how long an import may take; default 60s
	GracefulTimeout time.Duration // how long Stop waits for running requests; default 30s

	// Timeout is the per-request deadline: time to the first response block, and then
	// between blocks. Past it the worker's stacks are logged, it is killed and replaced,
	// and the client gets 504. Default 30s; negative disables.
	Timeout time.Duration

	MaxRequests       int64         // recycle a worker after this many requests (0: never)
	MaxRequestsJitter int64         // plus a random 0..jitter, so workers do not recycle together
	MaxLifetime       time.Duration // recycle a worker this long after it started (0: never)
	MaxLifetimeJitter time.Duration
	MaxRSS            int64 // recycle a worker whose resident memory passes this (bytes; 0: never)

	MaxWorkers  int           // autoscale up to this many workers (0: fixed at Workers)
	IdleTimeout time.Duration // retire an autoscaled worker idle this long; default 30s
	Hooks       string        // Python module with server hooks
	Preload     bool          // import the app once in a zygote and fork workers from it

	// User and Group the workers run as (name or number); Caddy must run as root. The
	// switch happens at exec, before Python imports anything.
	User, Group string

	// EnvInherit limits what the workers inherit from Caddy's environment: nil inherits
	// everything (as Gunicorn does); ["off"] only the basics (PATH, HOME, LANG, LC_ALL,
	// LC_CTYPE, TZ, TMPDIR); a list of names, the basics and those. Env is added after.
	EnvInherit []string

	// EnvFiles are dotenv files (see ParseEnvFile) read at each worker start, so a
	// restart picks up their edits (with Preload, at each zygote start). Their variables
	// come after the inherited ones and before Env.
	EnvFiles []string

	// WorkerClass is how a worker runs the app (see WorkerClass): sync (default), gevent
	// or asgi, the last two with WorkerConnections channels per process.
	WorkerClass       WorkerClass
	WorkerConnections int // gevent: concurrent requests per worker, default 100; asgi: 1000

	// Lifespan (asgi): "auto" (default: run the ASGI lifespan protocol, and go on without
	// it if the app raises), "on" (a failure is a boot failure) or "off".
	Lifespan string

	// Reload restarts the workers, rolling, when a .py file under Chdir changes (dev).
	Reload bool

	ServerSoftware string // SERVER_SOFTWARE
	Logger         *zap.Logger
}

// Defaults returns c with every unset field given its default.
func (c Config) Defaults() Config {
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	c = c.WorkerClass.defaults(c)
	if c.Threads <= 0 {
		c.Threads = 1
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = 30 * time.Second
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 1000
	}
	if c.BootTimeout <= 0 {
		c.BootTimeout = 60 * time.Second
	}
	if c.GracefulTimeout <= 0 {
		c.GracefulTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.ServerSoftware == "" {
		c.ServerSoftware = "caddy-wsgi"
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// appSpecPattern accepts module, module:name.attr, and module:factory(literal args).
var appSpecPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*` +
	`(:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(.*\))?)?$`)

// ValidateAppSpec reports a malformed app spec.
func ValidateAppSpec(spec string) error {
	if spec == "" {
		return errors.New("app spec is empty; want module:callable")
	}
	if !appSpecPattern.MatchString(spec) {
		return fmt.Errorf("malformed app spec %q; want module, module:callable or module:factory()", spec)
	}
	return nil
}

// Interpreter resolves the Python executable to run.
func (c Config) Interpreter() (string, error) {
	python := c.Python
	if python == "" && c.Venv != "" {
		python = filepath.Join(c.Venv, "bin", "python")
	}
	if python == "" {
		python = "python3"
	}
	path, err := exec.LookPath(python)
	if err != nil {
		return "", fmt.Errorf("python interpreter %q: %w", python, err)
	}
	// Relative paths count from Caddy's working directory, like chdir and venv; the
	// worker runs in chdir, where a relative path would mean something else.
	return filepath.Abs(path)
}

// Validate checks what can be checked without starting Python.
func (c Config) Validate() error {
	if err := ValidateAppSpec(c.App); err != nil {
		return err
	}
	if _, err := LoadEnvFiles(c.EnvFiles); err != nil {
		return err
	}
	if c.Workers < 0 || c.Threads < 0 || c.MaxQueue < 0 || c.MaxRequests < 0 ||
		c.MaxRequestsJitter < 0 || c.MaxLifetime < 0 || c.MaxLifetimeJitter < 0 || c.MaxRSS < 0 {
		return errors.New("workers, threads, max_queue and the recycling limits must not be negative")
	}
	if err := c.WorkerClass.validate(c); err != nil {
		return err
	}
	if _, err := c.Interpreter(); err != nil {
		return err
	}
	_, err := c.credential()
	return err
}

// credential resolves User and Group; nil when the workers keep Caddy's identity.
func (c Config) credential() (*workerCred, error) {
	if c.User == "" && c.Group == "" {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("user and group need Caddy to run as root")
	}
	cred := &workerCred{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
	if c.User != "" {
		u, err := user.Lookup(c.User)
		if err != nil {
			if u, err = user.LookupId(c.User); err != nil {
				return nil, fmt.Errorf("user %q: %w", c.User, err)
			}
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
	}
	if c.Group != "" {
		g, err := user.LookupGroup(c.Group)
		if err != nil {
			if g, err = user.LookupGroupId(c.Group); err != nil {
				return nil, fmt.Errorf("group %q: %w", c.Group, err)
			}
		}
		gid, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(gid)
	}
	cred.Groups = []uint32{cred.Gid} // drop root's supplementary groups
	return cred, nil
}

// fdHeadroom is what a worker keeps for itself and its app beyond its channels: the
// interpreter, imports, database connections, outgoing requests.
const fdHeadroom = 256

// checkFileLimit refuses a worker whose channels would not leave the app room to open
// files under the hard RLIMIT_NOFILE (workers raise their soft limit to it).
func checkFileLimit(channels int) error {
	hard, ok := hardFileLimit()
	if !ok {
		return nil
	}
	return fileLimitError(channels, hard)
}

func fileLimitError(channels int, hard uint64) error {
	if need := uint64(channels + fdHeadroom); hard < need {
		return fmt.Errorf("%d channels per worker need %d open files, but RLIMIT_NOFILE allows %d: lower max_concurrency/worker_connections or raise the limit (LimitNOFILE= in systemd, ulimit -n)",
			channels, need, hard)
	}
	return nil
}
