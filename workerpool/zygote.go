package workerpool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/pyruntime"
	"go.uber.org/zap"
)

// zygote is the Python parent of preloaded workers: it imported the app once and forks
// a worker for each FORK frame, reporting each child's exit (PROTOCOL.md, "Preload").
type zygote struct {
	pid    int
	ctl    *protocol.Conn
	dump   *os.File
	exited chan struct{}
	forked chan int

	forkMu sync.Mutex // one FORK in flight

	mu       sync.Mutex
	children map[int]*worker
	early    map[int]syscall.WaitStatus // exits reported before fork() registered the child
	retiring bool
}

// currentZygote returns the running zygote, starting one if there is none.
func (p *Pool) currentZygote() (*zygote, error) {
	p.zmu.Lock()
	defer p.zmu.Unlock()
	if p.zyg != nil {
		select {
		case <-p.zyg.exited:
			p.zyg = nil
		default:
			return p.zyg, nil
		}
	}
	z, err := p.startZygote()
	if err != nil {
		return nil, err
	}
	p.zyg = z
	return z, nil
}

// retireZygote makes the next fork start a new zygote (new code); the old one exits
// once its last worker has.
func (p *Pool) retireZygote() {
	p.zmu.Lock()
	z := p.zyg
	p.zyg = nil
	p.zmu.Unlock()
	if z != nil {
		z.mu.Lock()
		z.retiring = true
		idle := len(z.children) == 0
		z.mu.Unlock()
		if idle {
			z.stop()
		}
	}
}

func (p *Pool) startZygote() (*zygote, error) {
	env, err := p.spawnEnv()
	if err != nil {
		return nil, err
	}
	ctl, theirs, err := protocol.Socketpair()
	if err != nil {
		return nil, err
	}
	pipes, err := newPipes(3)
	if err != nil {
		ctl.Close()
		theirs.Close()
		return nil, err
	}
	cmd := exec.Command(p.python, "-c", pyruntime.Bootstrap, "caddy-wsgi-zygote", p.cfg.App, p.workerConfigJSON(4))
	cmd.Dir = p.cfg.Chdir
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{theirs, pipes[0].w}
	cmd.Stdout, cmd.Stderr = pipes[1].w, pipes[2].w
	cmd.SysProcAttr = sysProcAttr(p.cred)
	cmd.Stdin = bytesReader(pyruntime.Source)
	err = cmd.Start()
	theirs.Close()
	for _, pp := range pipes {
		pp.w.Close()
	}
	if err != nil {
		ctl.Close()
		for _, pp := range pipes {
			pp.r.Close()
		}
		return nil, fmt.Errorf("starting zygote %s: %w", p.python, err)
	}
	z := &zygote{pid: cmd.Process.Pid, ctl: ctl, dump: pipes[0].r, exited: make(chan struct{}),
		forked: make(chan int, 1), children: map[int]*worker{}, early: map[int]syscall.WaitStatus{}}
	log := p.log.With(zap.Int("zygote_pid", z.pid))
	go forwardOutput(pipes[1].r, log, zap.InfoLevel, "stdout")
	go forwardOutput(pipes[2].r, log, zap.WarnLevel, "stderr")
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	// The zygote's READY uses the boot handshake of a worker.
	boot := p.newWorker() // the zygote's own boot handshake reads like a worker's
	boot.pid, boot.slots, boot.dump = z.pid, []*Slot{{conn: ctl}}, z.dump
	go func() { boot.exitErr = <-waited; close(boot.exited) }()
	if err := boot.awaitReady(p.cfg.BootTimeout); err != nil {
		if errors.Is(err, errBootTimeout) {
			err = fmt.Errorf("%w; the zygote was at:\n%s", err, boot.dumpStacks())
		}
		kill(-z.pid, syscall.SIGKILL)
		<-boot.exited
		ctl.Close()
		z.dump.Close()
		return nil, err
	}
	log.Info("zygote ready: the app is imported once, workers are forked from it")
	go z.read(p.log, boot.exited)
	return z, nil
}

// read handles FORKED and EXITED until the zygote is gone; then its workers are killed,
// since nobody could report their exits any more.
func (z *zygote) read(log *zap.Logger, processExited <-chan struct{}) {
	for {
		t, payload, err := z.ctl.ReadFrame()
		if err != nil {
			break
		}
		switch {
		case t == protocol.TypeForked && len(payload) == 4:
			z.forked <- int(binary.BigEndian.Uint32(payload))
		case t == protocol.TypeExited && len(payload) == 8:
			pid := int(binary.BigEndian.Uint32(payload))
			z.childExited(pid, waitStatus(binary.BigEndian.Uint32(payload[4:])))
		default:
			log.Error("zygote broke the protocol; stopping it", zap.Int("type", int(t)))
			kill(-z.pid, syscall.SIGKILL)
		}
	}
	z.mu.Lock()
	orphans := z.children
	z.children = map[int]*worker{}
	z.mu.Unlock()
	for pid, w := range orphans {
		w.kill()
		w.markExited(errors.New("zygote exited"))
		_ = pid
	}
	<-processExited
	z.ctl.Close()
	z.dump.Close()
	close(z.exited)
}

func (z *zygote) childExited(pid int, status syscall.WaitStatus) {
	z.mu.Lock()
	w, ok := z.children[pid]
	if ok {
		delete(z.children, pid)
	} else {
		z.early[pid] = status
	}
	last := z.retiring && len(z.children) == 0
	z.mu.Unlock()
	if ok {
		w.markExited(waitStatusError(status))
	}
	if last {
		z.stop()
	}
}

// forkFDBatch is how many descriptors go with one FORK or FORK_FDS frame.
const forkFDBatch = 250

// fork asks the zygote for a worker that inherits files.
func (z *zygote) fork(files []*os.File) (int, error) {
	z.forkMu.Lock()
	defer z.forkMu.Unlock()
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	// The kernel passes at most 253 descriptors per message (SCM_MAX_FD) and an ASGI worker
	// has a thousand channels: the first batch rides on FORK, the rest on FORK_FDS frames.
	frame := binary.BigEndian.AppendUint32(protocol.AppendHeader(nil, protocol.TypeFork, 4), uint32(len(fds)))
	for len(fds) > 0 || frame != nil {
		batch := fds[:min(len(fds), forkFDBatch)]
		fds = fds[len(batch):]
		if frame == nil {
			frame = protocol.AppendHeader(nil, protocol.TypeForkFDs, 0)
		}
		if _, _, err := z.ctl.Raw().WriteMsgUnix(frame, unixRights(batch...), nil); err != nil {
			return 0, fmt.Errorf("asking the zygote to fork: %w", err)
		}
		frame = nil
	}
	select {
	case pid := <-z.forked:
		return pid, nil
	case <-z.exited:
		return 0, errors.New("the zygote exited")
	case <-time.After(10 * time.Second):
		return 0, errors.New("the zygote did not fork within 10s")
	}
}

func (z *zygote) stop() {
	z.ctl.Raw().CloseWrite() // EOF: the zygote exits
	go func() {
		select {
		case <-z.exited:
		case <-time.After(3 * time.Second):
			kill(-z.pid, syscall.SIGKILL)
		}
	}()
}

// launchFork gets a worker from the zygote.
func (p *Pool) launchFork(w *worker, child childFiles) error {
	z, err := p.currentZygote()
	if err != nil {
		return err
	}
	pid, err := z.fork(child)
	if err != nil {
		return err
	}
	w.pid, w.started = pid, time.Now()
	z.mu.Lock()
	if status, gone := z.early[pid]; gone {
		delete(z.early, pid)
		z.mu.Unlock()
		w.markExited(waitStatusError(status))
		return nil
	}
	z.children[pid] = w
	z.mu.Unlock()
	return nil
}

func (w *worker) markExited(err error) {
	w.exitErr = err
	w.state.To(workerStopped)
	close(w.exited)
}

func waitStatusError(ws syscall.WaitStatus) error {
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return fmt.Errorf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Errorf("signal: %v", ws.Signal())
	}
	return fmt.Errorf("wait status %#x", ws)
}
