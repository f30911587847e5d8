package workerpool

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/pyruntime"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// worker is one Python process and its channels (one per thread).
type worker struct {
	pid     int
	cmd     *exec.Cmd
	slots   []*Slot
	dump    *os.File      // read end of the stack-dump pipe (faulthandler on SIGUSR1)
	busy    int           // slots handed out; guarded by Pool.mu
	exited  chan struct{} // closed when the process has been reaped
	exitErr error         // set before exited is closed
	dead    atomic.Bool   // no new requests: exited, broken, retiring or stopped
	served  atomic.Int64
	started time.Time

	maxRequests int64       // recycle after this many requests (0: never)
	recycle     chan string // a reason to replace this worker; buffered, first one wins
	stopReason  atomic.Pointer[string]
}

// requestRecycle asks the supervisor to replace w, once; it never blocks.
func (w *worker) requestRecycle(reason string) {
	select {
	case w.recycle <- reason:
	default:
	}
}

var errBootTimeout = errors.New("app import did not finish within boot_timeout")

// BootError is a failed import, with the worker's traceback.
type BootError struct{ Traceback string }

func (e *BootError) Error() string {
	lines := strings.Split(strings.TrimSpace(e.Traceback), "\n")
	return "app failed to import: " + lines[len(lines)-1]
}

// workerConfig is the JSON the runtime reads from argv (see PROTOCOL.md).
type workerConfig struct {
	Threads        int      `json:"threads"`
	DumpFD         int      `json:"dump_fd"`
	Multiprocess   bool     `json:"multiprocess"`
	ServerSoftware string   `json:"server_software"`
	PythonPath     []string `json:"pythonpath"`
}

// spawn starts one worker and waits until it has imported the app.
func (p *Pool) spawn() (*worker, error) {
	cfg := p.cfg
	wc, err := json.Marshal(workerConfig{
		Threads:        cfg.Threads,
		DumpFD:         3 + cfg.Threads,
		Multiprocess:   cfg.Workers > 1,
		ServerSoftware: cfg.ServerSoftware,
		PythonPath:     absPaths(cfg.PythonPath),
	})
	if err != nil {
		return nil, err
	}
	w := &worker{exited: make(chan struct{}), recycle: make(chan string, 1), maxRequests: p.requestLimit()}
	var childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	for i := 0; i < cfg.Threads; i++ {
		conn, theirs, err := protocol.Socketpair()
		if err != nil {
			w.closeSlots()
			return nil, err
		}
		childEnds = append(childEnds, theirs)
		w.slots = append(w.slots, &Slot{conn: conn, worker: w})
	}

	dumpR, dumpW, err := os.Pipe()
	if err != nil {
		w.closeSlots()
		return nil, err
	}
	w.dump = dumpR
	childEnds = append(childEnds, dumpW)

	cmd := exec.Command(p.python, "-c", pyruntime.Bootstrap, "caddy-wsgi-worker", cfg.App, string(wc))
	cmd.Dir = cfg.Chdir
	cmd.Env = p.env
	cmd.ExtraFiles = childEnds
	// Own process group: a Ctrl-C in the terminal reaches Caddy, which stops the workers
	// in order. Pdeathsig kills the worker if Caddy dies; closed channels do too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		w.closeSlots()
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		w.closeSlots()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		w.closeSlots()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		w.closeSlots()
		return nil, fmt.Errorf("starting %s: %w", p.python, err)
	}
	w.cmd, w.pid, w.started = cmd, cmd.Process.Pid, time.Now()
	log := p.log.With(zap.Int("pid", w.pid))
	go forwardOutput(outR, log, zap.InfoLevel, "stdout")
	go forwardOutput(errR, log, zap.WarnLevel, "stderr")
	go func() {
		// The runtime is small (tens of KiB): this never blocks for long, but a worker
		// that dies at once must not wedge spawn.
		stdin.Write(pyruntime.Source)
		stdin.Close()
	}()
	go func() {
		w.exitErr = cmd.Wait()
		w.dead.Store(true)
		close(w.exited)
	}()

	if err := w.awaitReady(cfg.BootTimeout); err != nil {
		if errors.Is(err, errBootTimeout) {
			err = fmt.Errorf("%w; it was at:\n%s", err, w.dumpStacks())
		}
		w.kill()
		<-w.exited
		w.closeSlots()
		return nil, err
	}
	return w, nil
}

// awaitReady reads the boot handshake on channel 0.
func (w *worker) awaitReady(timeout time.Duration) error {
	c := w.slots[0].conn
	c.Raw().SetReadDeadline(time.Now().Add(timeout))
	defer c.Raw().SetReadDeadline(time.Time{})
	t, payload, err := c.ReadFrame()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("worker %d: %w %s", w.pid, errBootTimeout, timeout)
		}
		// The process died before saying anything: its stderr, already logged, says why.
		<-w.exited
		return fmt.Errorf("worker %d exited during boot (%v)", w.pid, w.exitErr)
	}
	switch t {
	case protocol.TypeReady:
		return nil
	case protocol.TypeBootError:
		return &BootError{Traceback: string(payload)}
	default:
		return fmt.Errorf("worker %d sent frame 0x%02x before READY: %w", w.pid, byte(t), protocol.ErrProtocol)
	}
}

// kill stops the worker's whole process group at once.
func (w *worker) kill() {
	w.dead.Store(true)
	if w.cmd != nil && w.cmd.Process != nil {
		syscall.Kill(-w.pid, syscall.SIGKILL)
	}
}

// terminate asks the worker to stop: at EOF on its channels the runtime runs the
// worker_exit hook and exits. SIGTERM follows if it has not exited within a second.
func (w *worker) terminate() {
	w.dead.Store(true)
	for _, s := range w.slots {
		s.conn.Raw().CloseWrite()
	}
	select {
	case <-w.exited:
	case <-time.After(time.Second):
		syscall.Kill(w.pid, syscall.SIGTERM)
	}
}

func (w *worker) closeSlots() {
	for _, s := range w.slots {
		s.conn.Close()
	}
	if w.dump != nil {
		w.dump.Close()
	}
}

// dumpStacks asks the worker for the stacks of all its threads and returns them. It
// takes at most about a second, and returns what arrived by then.
func (w *worker) dumpStacks() string {
	if w.dump == nil || syscall.Kill(w.pid, syscall.SIGUSR1) != nil {
		return "(no stack: the worker is gone)"
	}
	var out []byte
	buf := make([]byte, 32<<10)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		// Once the dump started, a short silence means it is complete.
		quiet := deadline
		if len(out) > 0 {
			quiet = time.Now().Add(150 * time.Millisecond)
		}
		if quiet.After(deadline) {
			quiet = deadline
		}
		w.dump.SetReadDeadline(quiet)
		n, err := w.dump.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	if len(out) == 0 {
		return "(no stack: the worker did not answer SIGUSR1)"
	}
	return string(out)
}

// forwardOutput turns each line a worker prints into a log entry.
func forwardOutput(r io.ReadCloser, log *zap.Logger, level zapcore.Level, stream string) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if ce := log.Check(level, strings.TrimRight(string(line), "\r\n")); ce != nil {
				ce.Write(zap.String("stream", stream))
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

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

// workerEnv is Caddy's environment (as Gunicorn passes its own), the venv's, then Env.
func workerEnv(cfg Config) []string {
	env := os.Environ()
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
