package gateway

import (
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
)

// A slow client must never hold a Python worker. The pump writes a streamed response to
// the client on its own goroutine: what the client has not taken yet waits in memory
// (up to pumpMemory), then in an unlinked temporary file (up to pumpDisk, as NGINX's
// proxy buffering does); only past that does the worker wait for the client.
//
// A client that is only briefly behind (a fast reader on loopback or a LAN) must not cost
// a round trip through the disk: when memory is full the pump first waits up to
// pumpSpillAfter for the client to take some, as long as the client keeps taking bytes, and
// spills as soon as the client stalls for pumpStall. From then on that response spills
// without waiting, so a client that reads nothing holds the worker pumpStall once, until
// the client shows it was only the machine that stalled: it takes every spilled byte, or
// pumpMemory within pumpSpillAfter (a reader of 25 MB/s or more; a slow client, such as a
// phone on a weak link, never does). Blocks
// queued while the client is behind are coalesced into pumpSlab-sized buffers (reused across
// responses), so the client gets fewer, larger writes.
const (
	pumpMemory     = 1 << 20
	pumpDisk       = 1 << 30
	pumpSpillAfter = 40 * time.Millisecond
	// pumpStall is well above a scheduler's wait on a loaded machine: with 5 ms, a fast
	// client that merely waited for a CPU sent 100 MiB streams through the disk (2 CPUs,
	// 4 busy processes; 15 ms: +9 % MiB/s, −15 % Caddy CPU per stream).
	pumpStall = 15 * time.Millisecond
	pumpSlab  = 256 << 10
)

// pumpItem is one piece of the response, in order: bytes in memory, a stretch of the
// spill file, or a file the app passed with wsgi.file_wrapper.
type pumpItem struct {
	data  []byte
	spill bool     // data is in the spill file at off
	file  *os.File // sent from its current offset (sendfile when the connection allows)
	off   int64
	n     int64
	ring  *protocol.Ring // data is this ring's slot, freed once written
	slot  int
}

type pump struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu       sync.Mutex
	wake     *sync.Cond
	items    []pumpItem
	memBytes int   // bytes held in memory items
	pending  int64 // bytes queued, in memory and spilled
	spill    *os.File
	spillEnd int64
	closed   bool  // no more items will come
	err      error // the client failed; nothing more is written
	done     chan struct{}
	slabs    *sync.Pool // of *[]byte with cap pumpSlab
	slow     bool       // the client stalled while memory was full: spill from now on
	sent     int64      // bytes written to the client so far
	since    time.Time  // slow: when the client's current pace window began
	sentThen int64      // slow: sent at since
	gen      int        // the wait in progress (waitForRoom)
	stalled  int        // the last wait whose pumpStall timer fired
	writes   int        // items written to the client so far: the client's progress

	stall, spillAfter time.Duration // pumpStall and pumpSpillAfter (tests change them)
}

func newPump(w http.ResponseWriter, slabs *sync.Pool) *pump {
	p := &pump{w: w, rc: http.NewResponseController(w), done: make(chan struct{}), slabs: slabs,
		stall: pumpStall, spillAfter: pumpSpillAfter}
	p.wake = sync.NewCond(&p.mu)
	go p.run()
	return p
}

// push queues a copy of b. It waits only when pumpDisk bytes are already queued, and
// reports a client that failed.
func (p *pump) push(b []byte) error { return p.queue(b, nil, 0) }

// pushRing queues b, a slot of the response ring, uncopied while it fits in memory; the
// pump frees the slot once the bytes are written or spilled, or when it fails.
func (p *pump) pushRing(b []byte, r *protocol.Ring, slot int) error { return p.queue(b, r, slot) }

func (p *pump) queue(b []byte, r *protocol.Ring, slot int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := false
	defer func() {
		if r != nil && !kept {
			r.Free(slot)
		}
	}()
	for p.err == nil && p.pending+int64(len(b)) > pumpDisk && p.pending > 0 {
		p.wake.Wait()
	}
	if p.err != nil {
		return p.err
	}
	if p.slow && p.caughtUp() {
		p.slow = false
	}
	if p.memBytes+len(b) > pumpMemory && !p.slow {
		p.waitForRoom(len(b))
		if p.err != nil {
			return p.err
		}
	}
	if p.memBytes+len(b) <= pumpMemory || !p.spillTo(b) {
		if r != nil {
			p.items = append(p.items, pumpItem{data: b, n: int64(len(b)), ring: r, slot: slot})
			kept = true
		} else {
			p.appendMem(b)
		}
		p.memBytes += len(b)
	}
	p.pending += int64(len(b))
	p.wake.Broadcast()
	return nil
}

// waitForRoom waits for the client to make room for n bytes in memory, for as long as it
// keeps taking bytes (a write completes at least every pumpStall), up to pumpSpillAfter.
// A client that stalls is slow, and the response spills from then on: a client that reads
// nothing holds the worker pumpStall once.
func (p *pump) waitForRoom(n int) {
	giveUp := time.Now().Add(p.spillAfter)
	full := func() bool { return p.err == nil && p.memBytes+n > pumpMemory && p.memBytes > 0 }
	for full() {
		seen := p.writes
		p.gen++
		gen := p.gen
		t := time.AfterFunc(p.stall, func() {
			p.mu.Lock()
			p.stalled = gen
			p.wake.Broadcast()
			p.mu.Unlock()
		})
		for full() && p.stalled != gen {
			p.wake.Wait()
		}
		t.Stop()
		if full() && (p.writes == seen || time.Now().After(giveUp)) {
			p.slow = true
			p.since, p.sentThen = time.Now(), p.sent
			return
		}
	}
}

// caughtUp reports whether a slow client proved fast after all: it took every spilled
// byte, or pumpMemory within pumpSpillAfter (then it was only briefly behind, a stall of
// the machine, and memory is worth waiting for again). A window that ends without that
// pace starts the next one.
func (p *pump) caughtUp() bool {
	if p.pending == int64(p.memBytes) {
		return true
	}
	if now := time.Now(); now.Sub(p.since) > p.spillAfter {
		p.since, p.sentThen = now, p.sent
		return false
	}
	return p.sent-p.sentThen >= pumpMemory
}

// appendMem queues a copy of b in memory, in the last queued buffer when it has room (the
// one being written is never in items).
func (p *pump) appendMem(b []byte) {
	if k := len(p.items) - 1; k >= 0 && p.items[k].isMem() && len(p.items[k].data)+len(b) <= cap(p.items[k].data) {
		it := &p.items[k]
		it.data = append(it.data, b...)
		it.n += int64(len(b))
		return
	}
	var buf []byte
	if len(b) <= pumpSlab {
		buf = p.slab()
	} else {
		buf = make([]byte, 0, len(b))
	}
	p.items = append(p.items, pumpItem{data: append(buf, b...), n: int64(len(b))})
}

// slab returns an empty buffer of capacity pumpSlab, from the pool when there is one.
func (p *pump) slab() []byte {
	if p.slabs == nil {
		return make([]byte, 0, pumpSlab)
	}
	return (*p.slabs.Get().(*[]byte))[:0]
}

// isMem reports an item in a buffer of the pump's own, which later blocks may extend.
func (it *pumpItem) isMem() bool { return it.file == nil && !it.spill && it.ring == nil }

// recycle returns a slab to the pool (other buffers are left to the GC).
func (p *pump) recycle(b []byte) {
	if cap(b) == pumpSlab && p.slabs != nil {
		b = b[:0]
		p.slabs.Put(&b)
	}
}

// spillTo appends b to the spill file; false if there is no file to be had.
func (p *pump) spillTo(b []byte) bool {
	if p.spill == nil {
		f, err := os.CreateTemp("", "caddy-wsgi-response-")
		if err != nil {
			return false
		}
		os.Remove(f.Name()) // unlinked: it goes away with the last descriptor
		p.spill = f
	}
	if _, err := p.spill.WriteAt(b, p.spillEnd); err != nil {
		return false
	}
	p.items = append(p.items, pumpItem{spill: true, off: p.spillEnd, n: int64(len(b))})
	p.spillEnd += int64(len(b))
	return true
}

// pushFile queues n bytes of f from its current offset; the pump closes f.
func (p *pump) pushFile(f *os.File, n int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		f.Close()
		return p.err
	}
	p.items = append(p.items, pumpItem{file: f, n: n})
	p.wake.Broadcast()
	return nil
}

// close says no more items come; wait blocks until all were written (or the client
// failed) and returns the client's error, if any.
func (p *pump) close() {
	p.mu.Lock()
	p.closed = true
	p.wake.Broadcast()
	p.mu.Unlock()
}

func (p *pump) wait() error {
	<-p.done
	return p.err
}

func (p *pump) run() {
	defer close(p.done)
	defer func() {
		p.mu.Lock()
		for _, it := range p.items {
			if it.file != nil {
				it.file.Close()
			}
			if it.ring != nil {
				it.ring.Free(it.slot)
			}
		}
		p.items = nil
		if p.spill != nil {
			p.spill.Close()
		}
		p.wake.Broadcast()
		p.mu.Unlock()
	}()
	for {
		p.mu.Lock()
		for len(p.items) == 0 && !p.closed {
			p.wake.Wait()
		}
		if len(p.items) == 0 {
			p.mu.Unlock()
			return
		}
		it := p.items[0]
		p.items = p.items[1:]
		more := len(p.items) > 0
		p.mu.Unlock()

		err := p.write(it)
		if err == nil && !more {
			err = p.rc.Flush() // caught up: what the app produced reaches the client now
		}
		p.mu.Lock()
		if it.file == nil {
			p.pending -= it.n
			if !it.spill {
				p.memBytes -= len(it.data)
				if it.ring != nil {
					it.ring.Free(it.slot)
				} else {
					p.recycle(it.data)
				}
			}
		}
		if err != nil {
			p.err = err
		}
		p.writes++
		if err == nil {
			p.sent += it.n
		}
		p.wake.Broadcast()
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *pump) write(it pumpItem) error {
	switch {
	case it.file != nil:
		defer it.file.Close()
		_, err := io.Copy(p.w, io.LimitReader(it.file, it.n))
		return err
	case it.spill:
		return p.writeSpilled(it.off, it.n)
	default:
		_, err := p.w.Write(it.data)
		return err
	}
}

// writeSpilled copies a stretch of the spill file to the client in slab-sized reads and
// writes (io.Copy would take 32 KiB at a time: twice the syscalls).
func (p *pump) writeSpilled(off, n int64) error {
	buf := p.slab()[:pumpSlab]
	defer p.recycle(buf)
	for n > 0 {
		m, err := p.spill.ReadAt(buf[:min(n, int64(len(buf)))], off)
		if m > 0 {
			if _, werr := p.w.Write(buf[:m]); werr != nil {
				return werr
			}
			off += int64(m)
			n -= int64(m)
		}
		if err != nil && n > 0 {
			return err
		}
	}
	return nil
}
