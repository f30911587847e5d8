package wsgihandler

import (
	"io"
	"net/http"
	"os"
	"sync"
)

// A slow client must never hold a Python worker. The pump writes a streamed response to
// the client on its own goroutine: what the client has not taken yet waits in memory
// (up to pumpMemory), then in an unlinked temporary file (up to pumpDisk, as NGINX's
// proxy buffering does); only past that does the worker wait for the client.
const (
	pumpMemory = 1 << 20
	pumpDisk   = 1 << 30
)

// pumpItem is one piece of the response, in order: bytes in memory, a stretch of the
// spill file, or a file the app passed with wsgi.file_wrapper.
type pumpItem struct {
	data  []byte
	spill bool     // data is in the spill file at off
	file  *os.File // sent from its current offset (sendfile when the connection allows)
	off   int64
	n     int64
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
}

func newPump(w http.ResponseWriter) *pump {
	p := &pump{w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
	p.wake = sync.NewCond(&p.mu)
	go p.run()
	return p
}

// push queues a copy of b. It waits only when pumpDisk bytes are already queued, and
// reports a client that failed.
func (p *pump) push(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.err == nil && p.pending+int64(len(b)) > pumpDisk && p.pending > 0 {
		p.wake.Wait()
	}
	if p.err != nil {
		return p.err
	}
	if p.memBytes+len(b) <= pumpMemory || !p.spillTo(b) {
		p.items = append(p.items, pumpItem{data: append([]byte(nil), b...), n: int64(len(b))})
		p.memBytes += len(b)
	}
	p.pending += int64(len(b))
	p.wake.Broadcast()
	return nil
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
			}
		}
		if err != nil {
			p.err = err
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
		_, err := io.Copy(p.w, io.NewSectionReader(p.spill, it.off, it.n))
		return err
	default:
		_, err := p.w.Write(it.data)
		return err
	}
}
