package caddymodule

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const metricsNamespace = "caddy_wsgi"

// poolMetrics are a pool's request metrics. They live with the pool, so they keep
// counting across config reloads that keep the pool.
type poolMetrics struct {
	pool      string
	requests  *prometheus.CounterVec
	queueWait prometheus.Observer
	duration  prometheus.Observer
	queueVec  *prometheus.HistogramVec
	durVec    *prometheus.HistogramVec
}

func newRequestsVec() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "requests_total",
		Help: "Requests answered by the pool, by status class.",
	}, []string{"pool", "code"})
}

func newQueueWaitVec() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Name: "queue_wait_seconds",
		Help:    "Time requests waited for a free worker thread.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
	}, []string{"pool"})
}

func newDurationVec() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Name: "request_duration_seconds",
		Help:    "Time from dispatch to a worker to the end of the response.",
		Buckets: prometheus.DefBuckets,
	}, []string{"pool"})
}

func newPoolMetrics(pool string) *poolMetrics {
	m := &poolMetrics{pool: pool, requests: newRequestsVec(), queueVec: newQueueWaitVec(), durVec: newDurationVec()}
	m.queueWait = m.queueVec.WithLabelValues(pool)
	m.duration = m.durVec.WithLabelValues(pool)
	return m
}

// ObserveRequest implements gateway.Observer.
func (m *poolMetrics) ObserveRequest(queueWait, duration time.Duration, code int) {
	m.queueWait.Observe(queueWait.Seconds())
	if duration > 0 {
		m.duration.Observe(duration.Seconds())
	}
	m.requests.WithLabelValues(m.pool, strconv.Itoa(code/100)+"xx").Inc()
}

// collector exports every pool's gauges (read at scrape time) and request metrics.
type collector struct {
	workers, busy, queue, restarts, rss *prometheus.Desc
	// Prototypes for Describe; each pool has its own vectors with the same descriptors.
	requests *prometheus.CounterVec
	queueVec *prometheus.HistogramVec
	durVec   *prometheus.HistogramVec
}

func newCollector() *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(metricsNamespace+"_"+name, help, labels, nil)
	}
	return &collector{
		workers:  d("workers", "Worker processes by state (idle, busy).", "pool", "state"),
		busy:     d("busy_threads", "Worker threads running a request.", "pool"),
		queue:    d("queue_depth", "Requests waiting for a worker thread.", "pool"),
		restarts: d("worker_restarts_total", "Worker replacements by reason.", "pool", "reason"),
		rss:      d("worker_rss_bytes", "Resident memory of each worker process.", "pool", "pid"),
		requests: newRequestsVec(), queueVec: newQueueWaitVec(), durVec: newDurationVec(),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.workers, c.busy, c.queue, c.restarts, c.rss} {
		ch <- d
	}
	c.requests.Describe(ch)
	c.queueVec.Describe(ch)
	c.durVec.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	all := listPools()
	for i := len(all) - 1; i >= 0; i-- { // newest first: it owns the name during a reload
		h := all[i]
		if seen[h.name] {
			continue
		}
		seen[h.name] = true
		st := h.pool.Stats()
		idle, busy := 0, 0
		for _, w := range st.Workers {
			if w.Busy > 0 {
				busy++
			} else {
				idle++
			}
			ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(w.RSS), h.name, strconv.Itoa(w.PID))
		}
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(idle), h.name, "idle")
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(busy), h.name, "busy")
		ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, float64(st.BusyThreads), h.name)
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.QueueDepth), h.name)
		for reason, n := range st.Restarts {
			ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(n), h.name, reason)
		}
		h.metrics.requests.Collect(ch)
		h.metrics.queueVec.Collect(ch)
		h.metrics.durVec.Collect(ch)
	}
}

// registerMetrics adds the collector to a config's registry once; further wsgi handlers
// of the same config find it there (it reports every pool).
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	err := reg.Register(newCollector())
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		return nil
	}
	return err
}
