package workerpool

import (
	"testing"
	"time"
)

func TestWorkerClassDefaults(t *testing.T) {
	for _, tc := range []struct {
		class             WorkerClass
		threads, channels int
		lifespan          string
	}{
		{"", 4, 4, ""},
		{ClassSync, 0, 1, ""},
		{ClassGevent, 4, 100, ""},
		{ClassASGI, 0, 1000, "auto"},
	} {
		c := Config{WorkerClass: tc.class, Threads: tc.threads}.Defaults()
		if c.Threads != tc.channels || c.Lifespan != tc.lifespan {
			t.Errorf("%q: threads %d lifespan %q, want %d %q", tc.class, c.Threads, c.Lifespan, tc.channels, tc.lifespan)
		}
	}
}

func TestWorkerClassPolicies(t *testing.T) {
	if ClassSync.Timeout() != KillWorker || ClassGevent.Timeout() != KillWorker || ClassASGI.Timeout() != CancelRequest {
		t.Error("timeout policy: sync and gevent kill the worker, asgi cancels the request")
	}
	if ClassASGI.App() != ASGIScope || WorkerClass("").App() != WSGIEnviron {
		t.Error("app interface")
	}
	if g := ClassSync.retireGrace(time.Minute); g != time.Second {
		t.Errorf("sync retire grace %s", g)
	}
	if g := ClassASGI.retireGrace(time.Minute); g != time.Minute {
		t.Errorf("asgi retire grace %s", g)
	}
	if !ClassGevent.ServesWSGI() || ClassASGI.ServesWSGI() || WorkerClass("eventlet").ServesWSGI() {
		t.Error("ServesWSGI")
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{WorkerClass: "eventlet"}, `worker_class "eventlet": want sync or gevent (asgi: use the asgi directive)`},
		{Config{WorkerClass: ClassGevent, Preload: true, Threads: 10}, "worker_class gevent cannot be combined with preload: gevent must patch before the app is imported, in each worker"},
		{Config{Threads: 300}, "threads 300 is more than 256"},
		{Config{WorkerClass: ClassASGI, Threads: 20000}, "worker_connections 20000 is more than 10000"},
		{Config{WorkerClass: ClassASGI, Threads: 10, Lifespan: "maybe"}, `lifespan "maybe": want auto, on or off`},
		{Config{WorkerClass: ClassGevent, Threads: 10, Lifespan: "on"}, "lifespan is for ASGI apps"},
	} {
		if err := tc.cfg.WorkerClass.validate(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: %v, want %s", tc.cfg, err, tc.want)
		}
	}
}
