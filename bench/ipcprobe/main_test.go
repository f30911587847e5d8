package main

import (
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary act as the probe's child: probe re-executes os.Executable().
func TestMain(m *testing.M) {
	for i, a := range os.Args {
		if a == "-child" && i+1 < len(os.Args) {
			os.Args = append([]string{os.Args[0]}, os.Args[i:]...)
			main()
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

func TestProbeModes(t *testing.T) {
	for _, mode := range []string{"socketpair", "futex", "spin"} {
		t.Run(mode, func(t *testing.T) {
			r := probe(mode, 200, 20, 5*time.Second)
			if r.Error != "" {
				t.Fatalf("probe %s: %s", mode, r.Error)
			}
			if r.RoundTrips == 0 || r.RoundTrips > 200 {
				t.Fatalf("round trips = %d, want 1..200", r.RoundTrips)
			}
			if !(r.MinUS > 0 && r.MinUS <= r.MedianUS && r.MedianUS <= r.P99US && r.P99US <= r.MaxUS) {
				t.Fatalf("figures out of order: %+v", r)
			}
		})
	}
}

func TestProbeUnknownMode(t *testing.T) {
	if r := probe("nope", 10, 0, time.Second); r.Error == "" {
		t.Fatal("an unknown mode gave no error")
	}
}
