package worker

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// workerMetrics are a cluster worker's Prometheus metrics, in a registry
// of its own.
type workerMetrics struct {
	reg             *prometheus.Registry
	step            prometheus.Gauge
	generation      prometheus.Gauge
	rank            prometheus.Gauge
	loss            prometheus.Gauge
	imagesPerSecond prometheus.Gauge
	stepSeconds     prometheus.Histogram
	checkpoints     prometheus.Counter
	// checkpointFailures counts the checkpoint shards that could not be
	// written (each skipped its checkpoint).
	checkpointFailures prometheus.Counter
	ringFailures       prometheus.Counter
	heartbeats         *prometheus.CounterVec
}

func newWorkerMetrics() *workerMetrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "ringtrain", Subsystem: "worker", Name: name, Help: help})
	}
	m := &workerMetrics{
		reg:             prometheus.NewRegistry(),
		step:            g("step", "Optimizer steps taken."),
		generation:      g("generation", "The generation of the ring this worker runs or last ran."),
		rank:            g("rank", "This worker's rank in its ring."),
		loss:            g("train_loss", "Mean training loss over the last reporting window."),
		imagesPerSecond: g("images_per_second", "Training images per second of this worker over the last window."),
		stepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ringtrain", Subsystem: "worker", Name: "step_seconds",
			Help: "Duration of one training step, all-reduce included.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ringtrain", Subsystem: "worker", Name: "checkpoint_shards_total", Help: "Checkpoint shards written."}),
		checkpointFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ringtrain", Subsystem: "worker", Name: "checkpoint_write_failures_total",
			Help: "Checkpoint shards that could not be written (a full disk, say); each skipped its checkpoint."}),
		ringFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ringtrain", Subsystem: "worker", Name: "ring_failures_total", Help: "Generations that ended in a ring failure."}),
		heartbeats:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ringtrain", Subsystem: "worker", Name: "heartbeats_total", Help: "Heartbeats sent, by result."}, []string{"result"}),
	}
	m.reg.MustRegister(m.step, m.generation, m.rank, m.loss, m.imagesPerSecond, m.stepSeconds, m.checkpoints, m.checkpointFailures, m.ringFailures, m.heartbeats,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *workerMetrics) heartbeat(ok bool) {
	if ok {
		m.heartbeats.WithLabelValues("ok").Inc()
	} else {
		m.heartbeats.WithLabelValues("error").Inc()
	}
}

// Handler serves the worker's /healthz (the process is up), /readyz (it
// is training in a running ring) and /metrics.
func (w *ClusterWorker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		w.mu.Lock()
		in := w.prog.inRing
		w.mu.Unlock()
		if !in {
			http.Error(rw, "not in a running ring", http.StatusServiceUnavailable)
			return
		}
		rw.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}
