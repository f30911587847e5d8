package workerpool

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestWorkerLifecycle(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := newLifecycle(workerBooting, int(workerStates), workerTransition, "worker", zap.New(core),
		func() zap.Field { return zap.Int("pid", 42) })
	retiring := l.Entered(workerRetiring)
	if !l.To(workerReady) || !l.Is(workerReady) {
		t.Fatal("booting → ready refused")
	}
	if l.To(workerReady) || l.To(workerBooting) {
		t.Error("a worker moved back, or to the state it is in")
	}
	select {
	case <-retiring:
		t.Fatal("retiring entered early")
	default:
	}
	if !l.To(workerRetiring) {
		t.Fatal("ready → retiring refused")
	}
	<-retiring
	if !l.To(workerStopped) || l.To(workerRetiring) {
		t.Error("retiring → stopped, and nothing after")
	}
	entries := logs.FilterMessage("worker state").All()
	if len(entries) != 3 || entries[0].ContextMap()["to"] != "ready" || entries[0].ContextMap()["pid"] != int64(42) {
		t.Errorf("transitions logged: %+v", entries)
	}
}

func TestPoolLifecycle(t *testing.T) {
	l := newLifecycle(poolStarting, int(poolStates), poolTransition, "pool", zap.NewNop(), nil)
	for _, step := range []struct {
		to poolState
		ok bool
	}{
		{poolStopped, false}, {poolFailing, true}, {poolReady, true}, {poolStarting, false},
		{poolFailing, true}, {poolDraining, true}, {poolReady, false}, {poolFailing, false}, {poolStopped, true},
	} {
		if got := l.To(step.to); got != step.ok {
			t.Errorf("%s → %s: %v, want %v", l.Get(), step.to, got, step.ok)
		}
	}
	<-l.Entered(poolDraining)
}
