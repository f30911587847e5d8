package main

import (
	"math"
	"testing"
	"time"
)

func TestHistBucketsAreContinuousAndClose(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v += 1 + v/97 {
		b := bucket(v)
		if b < prev {
			t.Fatalf("bucket(%d) = %d < %d", v, b, prev)
		}
		prev = b
		if got := value(b); math.Abs(float64(got)-float64(v)) > 0.016*float64(v)+1 {
			t.Fatalf("value(bucket(%d)) = %d", v, got)
		}
	}
}

func TestHistPercentiles(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct{ p, want float64 }{{50, 500e3}, {99, 990e3}} {
		got := float64(h.percentile(c.p))
		if math.Abs(got-c.want) > 0.02*c.want {
			t.Errorf("p%.0f = %.0f ns, want about %.0f", c.p, got, c.want)
		}
	}
	if h.percentile(100) != uint64(time.Millisecond) {
		t.Errorf("p100 = %d, want the max", h.percentile(100))
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, u := range []string{"ws://127.0.0.1:1/ws", "ws://localhost:1/", "ws://[::1]:1/", "ws://127.1.2.3/"} {
		if err := loopbackOnly(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"ws://10.0.0.1/", "ws://example.com/", "http://127.0.0.1/"} {
		if loopbackOnly(u) == nil {
			t.Errorf("%s accepted", u)
		}
	}
}
