package workerpool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/pyruntime"
	"go.uber.org/zap"
)

// worker is one Python process and its channels (one per thread).
type worker struct {
	pid   int
	cmd   *exec.Cmd
	slots []*Slot
	dump  *os.File // read end of the stack-dump pipe (faulthandler on SIGUSR1)
	busy  int      // slots handed out; guarded by Pool.mu
	idle  []*Slot  // slots ready for a request, last released last; guarded by Pool.mu
	// drained, set by retire while requests run, is closed when the last one ends;
	// guarded by Pool.mu.
	drained chan struct{}

	state   *lifecycle[workerState]
	exited  chan struct{} // closed when the process has been reaped (the state is stopped by then)
	exitErr error         // set before exited is closed
	served  atomic.Int64
	started time.Time

	maxRequests int64       // recycle after this many requests (0: never)
	recycle     chan string // a reason to replace this worker; buffered, first one wins
	recycleErr  chan error  // why an asked-for restart could not start a replacement; buffered
	stopReason  atomic.Pointer[string]
	codeGen     uint64 // Pool.codeGen when its boot began
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
	Threads        int         `json:"threads"`
	DumpFD         int         `json:"dump_fd"`
	Multiprocess   bool        `json:"multiprocess"`
	ServerSoftware string      `json:"server_software"`
	PythonPath     []string    `json:"pythonpath"`
	Hooks          string      `json:"hooks,omitempty"`
	WorkerClass    WorkerClass `json:"worker_class,omitempty"`
	Lifespan       string      `json:"lifespan,omitempty"`
	// Ring: Caddy maps response rings (PROTOCOL.md); the worker makes one only where
	// Python has os.memfd_create.
	Ring bool `json:"ring"`
}

func (p *Pool) workerConfigJSON(dumpFD int) string {
	cfg := p.cfg
	b, _ := json.Marshal(workerConfig{
		Threads:        cfg.Threads,
		DumpFD:         dumpFD,
		Multiprocess:   cfg.Workers > 1 || cfg.MaxWorkers > 1,
		ServerSoftware: cfg.ServerSoftware,
		PythonPath:     absPaths(cfg.PythonPath),
		Hooks:          cfg.Hooks,
		WorkerClass:    cfg.WorkerClass,
		Lifespan:       cfg.Lifespan,
		Ring:           true,
	})
	return string(b)
}

// childFiles are the worker's ends of its channels and pipes, in the order the runtime
// expects them (PROTOCOL.md): channels, stack-dump pipe, stdout, stderr.
type childFiles []*os.File

func (c childFiles) close() {
	for _, f := range c {
		f.Close()
	}
}

// spawn starts one worker, by exec or by a fork of the zygote, and waits until it has
// imported the app.
func (p *Pool) spawn() (*worker, error) {
	w := p.newWorker()
	w.codeGen = p.beginSpawn()
	booted := false
	defer func() {
		if !booted {
			p.endSpawn(w.codeGen)
		}
	}()
	var child childFiles
	defer func() { child.close() }()
	for i := 0; i < p.cfg.Threads; i++ {
		conn, theirs, err := protocol.Socketpair()
		if err != nil {
			w.closeSlots()
			return nil, err
		}
		child = append(child, theirs)
		w.slots = append(w.slots, newSlot(conn, w))
	}
	pipes, err := newPipes(3)
	if err != nil {
		w.closeSlots()
		return nil, err
	}
	w.dump = pipes[0].r
	child = append(child, pipes[0].w, pipes[1].w, pipes[2].w)

	if p.cfg.Preload {
		err = p.launchFork(w, child)
	} else {
		err = p.launchExec(w, child)
	}
	child.close()
	child = nil
	if err != nil {
		pipes[1].r.Close()
		pipes[2].r.Close()
		w.closeSlots()
		return nil, err
	}
	p.mu.Lock()
	p.live[w] = struct{}{}
	p.mu.Unlock()
	log := p.log.With(zap.Int("pid", w.pid))
	go forwardOutput(pipes[1].r, log, zap.InfoLevel, "stdout")
	go forwardOutput(pipes[2].r, log, zap.WarnLevel, "stderr")

	if err := w.awaitReady(p.cfg.BootTimeout); err != nil {
		if errors.Is(err, errBootTimeout) {
			err = fmt.Errorf("%w; it was at:\n%s", err, w.dumpStacks())
		}
		w.kill()
		<-w.exited
		p.mu.Lock()
		delete(p.live, w)
		p.mu.Unlock()
		w.closeSlots()
		return nil, err
	}
	// The spawn ends when the worker joins dispatch (addWorker) or is turned away
	// (the supervisor ends it when it turns the worker away): a Restart always sees it
	// booting or serving.
	booted = true
	return w, nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

type pipe struct{ r, w *os.File }

func newPipes(n int) ([]pipe, error) {
	var out []pipe
	for i := 0; i < n; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			for _, p := range out {
				p.r.Close()
				p.w.Close()
			}
			return nil, err
		}
		out = append(out, pipe{r, w})
	}
	return out, nil
}

// launchExec starts a fresh interpreter running the runtime.
func (p *Pool) launchExec(w *worker, child childFiles) error {
	threads := p.cfg.Threads
	env, err := p.spawnEnv()
	if err != nil {
		return err
	}
	cmd := exec.Command(p.python, "-c", pyruntime.Bootstrap, "caddy-wsgi-worker", p.cfg.App, p.workerConfigJSON(3+threads))
	cmd.Dir = p.cfg.Chdir
	cmd.Env = env
	cmd.ExtraFiles = child[:threads+1]
	cmd.Stdout, cmd.Stderr = child[threads+1], child[threads+2]
	// Own process group: a Ctrl-C in the terminal reaches Caddy, which stops the workers
	// in order. If Caddy dies, closed channels end the worker, and so does Pdeathsig on
	// Linux (elsewhere the runtime watches its parent).
	cmd.SysProcAttr = sysProcAttr(p.cred)
	cmd.Stdin = bytesReader(pyruntime.Source)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.python, err)
	}
	w.cmd, w.pid, w.started = cmd, cmd.Process.Pid, time.Now()
	go func() { w.markExited(cmd.Wait()) }()
	return nil
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

// newWorker returns a booting worker, before its process starts.
func (p *Pool) newWorker() *worker {
	w := &worker{
		exited:      make(chan struct{}),
		recycle:     make(chan string, 1),
		recycleErr:  make(chan error, 1),
		maxRequests: p.requestLimit(),
	}
	// pid is set before anything but spawn's goroutine can see the worker.
	w.state = newLifecycle(workerBooting, int(workerStates), workerTransition, "worker", p.log,
		func() zap.Field { return zap.Int("pid", w.pid) })
	return w
}

// leaving reports whether the worker takes no new request: retiring or stopped. One
// atomic load: Release asks it for every request.
func (w *worker) leaving() bool { return w.state.Get() >= workerRetiring }

// kill stops the worker's whole process group at once (and the worker itself, in case
// a forked one has not made its own group yet).
func (w *worker) kill() {
	w.state.To(workerStopped)
	if w.pid > 0 {
		kill(-w.pid, syscall.SIGKILL)
		kill(w.pid, syscall.SIGKILL)
	}
}

// terminate asks the worker to stop: at EOF on its channels the runtime runs the
// worker_exit hook (and, for ASGI, lifespan shutdown) and exits. SIGTERM follows if it
// has not exited within grace.
func (w *worker) terminate(grace time.Duration) {
	for _, s := range w.slots {
		s.conn.Raw().CloseWrite()
	}
	select {
	case <-w.exited:
	case <-time.After(grace):
		kill(w.pid, syscall.SIGTERM)
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

// crashDump returns what a dead worker's faulthandler wrote on a fatal signal, if any.
func (w *worker) crashDump() string {
	if w.dump == nil {
		return ""
	}
	w.dump.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	b, _ := io.ReadAll(io.LimitReader(w.dump, 1<<20))
	return strings.TrimSpace(string(b))
}

// dumpStacks asks the worker for the stacks of all its threads and returns them. It
// takes at most about a second, and returns what arrived by then.
func (w *worker) dumpStacks() string {
	if w.dump == nil || kill(w.pid, sigDump) != nil {
		return "(no stack: the worker is gone)"
	}
	var out []byte
	buf := make([]byte, 32<<10)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		// Once the dump started, a short silence means it is complete.
		quiet := deadline
		if len(out) > 0 {
			quiet = time.Now().Add(30 * time.Millisecond)
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
