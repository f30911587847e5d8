// Command ipcprobe measures what one wake-up between two processes costs on this machine, so that
// benchmark figures from different machines can be read side by side. It times three kinds of
// round trip between itself and a child process (itself, re-executed):
//
//   - socketpair: a 16-byte message over an AF_UNIX SOCK_STREAM socketpair and back (write, read);
//   - futex: a counter in shared memory bumped, then FUTEX_WAKE; the other side FUTEX_WAITs for it
//     and answers the same way (a process sleeping and being woken, with no data copied);
//   - spin: the same counters, both sides busy-polling them (no syscall; on a machine with fewer
//     free CPUs than two, the spinner competes with the side it waits for).
//
// Every loop is bounded: a fixed number of round trips (-n, after -warmup), a time cap per mode
// (-cap), and the child exits when the parent goes away or stops it. It prints one line per mode
// and, last, a line "IPCPROBE {json}" for bench/run.py. Linux only, standard library only.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	futexWait = 0 // shared (not FUTEX_PRIVATE_FLAG): the words live in a mapping of two processes
	futexWake = 1
	msgSize   = 16
	shmSize   = 4096
	childFD   = 3 // first of cmd.ExtraFiles
)

// Offsets of the uint32 words in the shared page, each on its own cache line.
const (
	offPing  = 0
	offPong  = 64
	offStop  = 128
	offReady = 192
)

// Result is one mode's figures, in microseconds per round trip.
type Result struct {
	Mode       string  `json:"mode"`
	RoundTrips int     `json:"round_trips"`
	MedianUS   float64 `json:"median_us"`
	P99US      float64 `json:"p99_us"`
	MinUS      float64 `json:"min_us"`
	MeanUS     float64 `json:"mean_us"`
	MaxUS      float64 `json:"max_us"`
	WarmupMS   float64 `json:"warmup_ms"`
	Capped     bool    `json:"capped,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// Report is the IPCPROBE line.
type Report struct {
	CPUs    int      `json:"cpus"`
	Go      string   `json:"go"`
	Warmup  int      `json:"warmup"`
	CapS    float64  `json:"cap_s"`
	Results []Result `json:"results"`
}

func main() {
	n := flag.Int("n", 20000, "round trips measured per mode")
	warm := flag.Int("warmup", 1000, "round trips before the measured ones")
	cap_ := flag.Duration("cap", 2*time.Second, "time cap per mode (the round trips done by then are kept)")
	spinN := flag.Int("spin-n", 20000, "round trips measured for the spin mode")
	modes := flag.String("modes", "socketpair,futex,spin", "modes to run, comma-separated")
	child := flag.String("child", "", "internal: run as the child of this mode")
	total := flag.Int("total", 0, "internal: round trips the child answers at most")
	flag.Parse()

	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	if *child != "" {
		// The child gives up a few seconds after the parent's cap: it never outlives a lost parent.
		if err := runChild(*child, *total, time.Now().Add(*cap_+5*time.Second)); err != nil {
			fmt.Fprintln(os.Stderr, "ipcprobe child:", err)
			os.Exit(1)
		}
		return
	}
	rep := Report{CPUs: runtime.NumCPU(), Go: runtime.Version(), Warmup: *warm, CapS: cap_.Seconds()}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		count := *n
		if m == "spin" {
			count = *spinN
		}
		r := probe(m, count, *warm, *cap_)
		rep.Results = append(rep.Results, r)
		if r.Error != "" {
			fmt.Printf("%-10s error: %s\n", m, r.Error)
			continue
		}
		fmt.Printf("%-10s %6d round trips  median %7.2f µs  p99 %8.2f µs  min %6.2f µs%s\n", m, r.RoundTrips,
			r.MedianUS, r.P99US, r.MinUS, map[bool]string{true: "  (time cap reached)", false: ""}[r.Capped])
	}
	js, _ := json.Marshal(rep)
	fmt.Printf("IPCPROBE %s\n", js)
}

// probe starts the child for mode, runs warm+n round trips (within cap) and summarises them.
func probe(mode string, n, warm int, cap_ time.Duration) Result {
	res := Result{Mode: mode}
	self, err := os.Executable()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var (
		shared  *os.File // what the child gets as fd 3
		rt      func(i uint32) error
		closeFn func()
		ready   = func() bool { return true } // the socketpair's first round trip waits for the child
	)
	switch mode {
	case "socketpair":
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			res.Error = "socketpair: " + err.Error()
			return res
		}
		mine := fds[0]
		shared = os.NewFile(uintptr(fds[1]), "socketpair")
		buf := make([]byte, msgSize)
		rt = func(uint32) error {
			if _, err := syscall.Write(mine, buf); err != nil {
				return err
			}
			return readFull(mine, buf)
		}
		closeFn = func() { syscall.Close(mine) }
	case "futex", "spin":
		f, mem, err := sharedPage()
		if err != nil {
			res.Error = err.Error()
			return res
		}
		shared = f
		ping, pong := word(mem, offPing), word(mem, offPong)
		deadline := time.Now().Add(cap_ + 5*time.Second)
		if mode == "futex" {
			rt = func(i uint32) error {
				atomic.StoreUint32(ping, i)
				futex(ping, futexWake, 1, nil)
				return waitFutex(pong, i, deadline)
			}
		} else {
			rt = func(i uint32) error {
				atomic.StoreUint32(ping, i)
				return waitSpin(pong, i, deadline)
			}
		}
		closeFn = func() {
			stop := word(mem, offStop)
			atomic.StoreUint32(stop, 1)
			futex(ping, futexWake, 1, nil)
			syscall.Munmap(mem)
		}
		ready = func() bool {
			for t := time.Now(); time.Since(t) < 5*time.Second; time.Sleep(time.Millisecond) {
				if atomic.LoadUint32(word(mem, offReady)) != 0 {
					return true
				}
			}
			return false
		}
	default:
		res.Error = "unknown mode"
		return res
	}

	cmd := exec.Command(self, "-child", mode, "-total", fmt.Sprint(n+warm+1), "-cap", cap_.String())
	cmd.ExtraFiles = []*os.File{shared}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		shared.Close()
		closeFn()
		res.Error = "start child: " + err.Error()
		return res
	}
	shared.Close()
	waited := false
	defer func() {
		closeFn()
		if !waited {
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
	}()

	if !ready() {
		res.Error = "child not ready after 5 s"
		return res
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < warm+n; i++ {
		if time.Since(start) > cap_ {
			res.Capped = true
			break
		}
		t0 := time.Now()
		if err := rt(uint32(i + 1)); err != nil {
			res.Error = fmt.Sprintf("round trip %d: %v", i+1, err)
			return res
		}
		if i == warm {
			res.WarmupMS = float64(time.Since(start).Microseconds()) / 1000
		}
		if i >= warm {
			lat = append(lat, time.Since(t0))
		}
	}
	if len(lat) == 0 {
		res.Error = "no round trip measured within the cap"
		return res
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	res.RoundTrips = len(lat)
	res.MedianUS = us(lat[len(lat)/2])
	res.P99US = us(lat[min(len(lat)-1, len(lat)*99/100)])
	res.MinUS = us(lat[0])
	res.MeanUS = us(sum / time.Duration(len(lat)))
	res.MaxUS = us(lat[len(lat)-1])
	return res
}

// runChild answers the parent's round trips: at most total of them, until deadline.
func runChild(mode string, total int, deadline time.Time) error {
	switch mode {
	case "socketpair":
		buf := make([]byte, msgSize)
		for i := 0; i < total && time.Now().Before(deadline); i++ {
			if err := readFull(childFD, buf); err == io.EOF {
				return nil // the parent is done
			} else if err != nil {
				return err
			}
			if _, err := syscall.Write(childFD, buf); err != nil {
				return err
			}
		}
		return nil
	case "futex", "spin":
		mem, err := syscall.Mmap(childFD, 0, shmSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap: %w", err)
		}
		ping, pong, stop := word(mem, offPing), word(mem, offPong), word(mem, offStop)
		atomic.StoreUint32(word(mem, offReady), 1)
		for i := 1; i <= total; i++ {
			v := uint32(i)
			for atomic.LoadUint32(ping) != v {
				if atomic.LoadUint32(stop) != 0 || !time.Now().Before(deadline) {
					return nil
				}
				if mode == "futex" {
					cur := atomic.LoadUint32(ping)
					if cur != v {
						ts := syscall.NsecToTimespec(int64(100 * time.Millisecond))
						futex(ping, futexWait, cur, &ts)
					}
				} else {
					spinPause(ping, v)
				}
			}
			atomic.StoreUint32(pong, v)
			if mode == "futex" {
				futex(pong, futexWake, 1, nil)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// spinPause polls w up to 4096 times (a bounded stretch between checks of the stop word).
func spinPause(w *uint32, v uint32) {
	for j := 0; j < 4096 && atomic.LoadUint32(w) != v; j++ {
	}
}

func waitFutex(w *uint32, v uint32, deadline time.Time) error {
	for {
		cur := atomic.LoadUint32(w)
		if cur == v {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("no answer before the deadline")
		}
		ts := syscall.NsecToTimespec(int64(100 * time.Millisecond))
		futex(w, futexWait, cur, &ts)
	}
}

func waitSpin(w *uint32, v uint32, deadline time.Time) error {
	for atomic.LoadUint32(w) != v {
		spinPause(w, v)
		if !time.Now().Before(deadline) {
			return fmt.Errorf("no answer before the deadline")
		}
	}
	return nil
}

func futex(w *uint32, op int, val uint32, ts *syscall.Timespec) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(w)), uintptr(op), uintptr(val),
		uintptr(unsafe.Pointer(ts)), 0, 0)
}

// sharedPage returns an unlinked tmpfs file of one page and its MAP_SHARED mapping; the child maps
// the same file (fd 3), so both see the same words (a memfd would do the same; the syscall package
// has no memfd_create).
func sharedPage() (*os.File, []byte, error) {
	dir := "/dev/shm"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "ipcprobe-*")
	if err != nil {
		return nil, nil, fmt.Errorf("shared page: %w", err)
	}
	os.Remove(f.Name())
	if err := f.Truncate(shmSize); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("shared page: %w", err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, shmSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return f, mem, nil
}

func word(mem []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }

func readFull(fd int, buf []byte) error {
	for got := 0; got < len(buf); {
		k, err := syscall.Read(fd, buf[got:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return io.EOF
		}
		got += k
	}
	return nil
}
