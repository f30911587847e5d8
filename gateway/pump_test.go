package gateway

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"
)

// gateWriter blocks every Write until open is closed, then records the bytes.
type gateWriter struct {
	open  chan struct{}
	delay time.Duration // per Write, once open: a client that is behind but reading
	mu    sync.Mutex
	buf   bytes.Buffer
	h     http.Header
}

func (g *gateWriter) Header() http.Header { return g.h }
func (g *gateWriter) WriteHeader(int)     {}
func (g *gateWriter) Flush()              {}
func (g *gateWriter) Write(p []byte) (int, error) {
	<-g.open
	time.Sleep(g.delay)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func pushBlocks(t *testing.T, p *pump, n int) []byte {
	t.Helper()
	var want []byte
	for i := 0; i < n; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 64<<10)
		want = append(want, b...)
		if err := p.push(b); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// A client that is behind but keeps taking bytes costs no spill file, and the blocks come
// out whole and in order. (Durations scaled up so that a loaded machine cannot fake a stall.)
func TestPumpBehindButReadingStaysInMemory(t *testing.T) {
	var slabs sync.Pool
	slabs.New = func() any { b := make([]byte, 0, pumpSlab); return &b }
	g := &gateWriter{open: make(chan struct{}), h: http.Header{}, delay: 5 * time.Millisecond}
	p := newPump(g, &slabs)
	p.stall, p.spillAfter = 500*time.Millisecond, 10*time.Second
	close(g.open)
	want := pushBlocks(t, p, 40) // 2.5 MiB: more than pumpMemory
	p.close()
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if p.spill != nil || p.slow {
		t.Error("a client behind for a few milliseconds made the pump spill to disk")
	}
	if !bytes.Equal(g.buf.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or out of order)", g.buf.Len(), len(want))
	}
}

// A client that takes nothing for pumpSpillAfter is slow: the pump spills, so the
// producer (the worker) is not held, and everything still arrives in order.
func TestPumpSlowClientSpills(t *testing.T) {
	g := &gateWriter{open: make(chan struct{}), h: http.Header{}}
	p := newPump(g, nil)
	p.stall = 50 * time.Millisecond
	start := time.Now()
	want := pushBlocks(t, p, 40)
	if held := time.Since(start); held > 5*time.Second {
		t.Errorf("the producer was held %v by a slow client", held)
	}
	if p.spill == nil || !p.slow {
		t.Error("a client that took nothing did not make the pump spill")
	}
	close(g.open)
	p.close()
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.buf.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or out of order)", g.buf.Len(), len(want))
	}
}

// A client that stalled once and then took every spilled byte was only briefly behind:
// the pump goes back to memory for what follows instead of spilling the rest.
func TestPumpClientThatCatchesUpLeavesTheDisk(t *testing.T) {
	g := &gateWriter{open: make(chan struct{}), h: http.Header{}}
	p := newPump(g, nil)
	p.stall = 20 * time.Millisecond
	want := pushBlocks(t, p, 40) // 2.5 MiB while the client takes nothing: spills
	if p.spill == nil || !p.slow {
		t.Fatal("a client that took nothing did not make the pump spill")
	}
	close(g.open)
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		left := p.pending
		p.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client did not catch up: %d bytes pending", left)
		}
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	spilled := p.spillEnd
	p.stall, p.spillAfter = 500*time.Millisecond, 10*time.Second // a loaded machine cannot fake a stall
	p.mu.Unlock()
	want = append(want, pushBlocks(t, p, 40)...) // the client keeps up now
	p.close()
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if p.slow || p.spillEnd != spilled {
		t.Errorf("after the client caught up the pump still spilled (%d more bytes, slow %v)", p.spillEnd-spilled, p.slow)
	}
	if !bytes.Equal(g.buf.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or out of order)", g.buf.Len(), len(want))
	}
}

// A client that stalled once and then reads fast, though it never catches up with a
// producer that is faster still, leaves the disk: it took pumpMemory within
// pumpSpillAfter, so it was the machine that stalled. (A 5 ms stall used to send the rest
// of a 100 MiB stream through the disk.)
func TestPumpFastClientAfterAStallLeavesTheDisk(t *testing.T) {
	g := &gateWriter{open: make(chan struct{}), h: http.Header{}}
	p := newPump(g, nil)
	p.stall = 20 * time.Millisecond
	want := pushBlocks(t, p, 40) // the client takes nothing: spills
	p.mu.Lock()
	stalled := p.slow
	p.spillAfter = time.Second // a loaded machine cannot make the fast client look slow
	p.mu.Unlock()
	if !stalled {
		t.Fatal("a client that took nothing did not make the pump spill")
	}
	close(g.open)
	left := false
	for i := 0; i < 100 && !left; i++ {
		want = append(want, pushBlocks(t, p, 1)...)
		p.mu.Lock()
		left = !p.slow && p.pending > int64(p.memBytes) // back to memory, spilled bytes still queued
		p.mu.Unlock()
	}
	p.close()
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if !left {
		t.Error("a client that reads fast after one stall kept the response on the disk until it took every spilled byte")
	}
	if !bytes.Equal(g.buf.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or out of order)", g.buf.Len(), len(want))
	}
}

// A client that reads, but slowly (a phone on a weak link), stays slow: the producer is
// not paced by it.
func TestPumpSlowReaderStaysOnTheDisk(t *testing.T) {
	g := &gateWriter{open: make(chan struct{}), h: http.Header{}, delay: 50 * time.Millisecond}
	p := newPump(g, nil)
	p.stall = 20 * time.Millisecond
	close(g.open)
	start := time.Now()
	want := pushBlocks(t, p, 100) // 6.25 MiB; at the client's pace (64 KiB per 50 ms) 5 s
	if held := time.Since(start); held > 2*time.Second {
		t.Errorf("the producer was held %v by a client reading 1.3 MB/s", held)
	}
	p.close()
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.buf.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or out of order)", g.buf.Len(), len(want))
	}
}
