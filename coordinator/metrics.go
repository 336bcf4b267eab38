package coordinator

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringtrain/ringtrain/api"
)

// metrics are a server's Prometheus metrics, in a registry of its own (two
// servers in one process never collide). The gauges are read from the
// server's state at scrape time; the counters count events.
type metrics struct {
	reg *prometheus.Registry

	leader         prometheus.Gauge
	heartbeats     prometheus.Counter
	refused        *prometheus.CounterVec
	committed      prometheus.Counter
	commitFailures prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ringtrain_is_leader", Help: "1 while this coordinator leads the job, else 0.",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringtrain_heartbeats_total", Help: "Worker heartbeats answered as leader.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringtrain_refused_calls_total",
			Help: "Workers' calls refused: reason=\"token\" for a wrong join token, \"identity\" for a TLS certificate that is not the worker's the call names.",
		}, []string{"reason"}),
		committed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringtrain_checkpoints_committed_total", Help: "Checkpoints committed in etcd.",
		}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringtrain_checkpoint_commit_failures_total", Help: "Checkpoints every rank reported that were not committed.",
		}),
	}
	m.reg.MustRegister(m.leader, m.heartbeats, m.refused, m.committed, m.commitFailures, &jobCollector{s: s})
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// jobCollector reports the job's gauges from one consistent look at the
// server's state per scrape.
type jobCollector struct{ s *Server }

var jobGauges = []struct {
	name, help string
	value      func(jobFigures) float64
}{
	{"ringtrain_generation", "The current generation of the ring.", func(f jobFigures) float64 { return float64(f.generation) }},
	{"ringtrain_workers", "Workers in the running ring (0 while paused or waiting).", func(f jobFigures) float64 { return float64(f.workers) }},
	{"ringtrain_members", "Workers admitted to the job, in the ring or not.", func(f jobFigures) float64 { return float64(f.members) }},
	{"ringtrain_step", "The furthest optimizer step the ring reported.", func(f jobFigures) float64 { return float64(f.step) }},
	{"ringtrain_epoch", "The epoch in progress.", func(f jobFigures) float64 { return float64(f.epoch) }},
	{"ringtrain_images_per_second", "Training throughput, summed over the workers.", func(f jobFigures) float64 { return f.imagesPerSecond }},
	{"ringtrain_train_loss", "Rank 0's mean training loss over its last window.", func(f jobFigures) float64 { return f.trainLoss }},
	{"ringtrain_test_accuracy", "Test accuracy of the last evaluation.", func(f jobFigures) float64 { return f.testAccuracy }},
	{"ringtrain_last_checkpoint_step", "Step of the newest checkpoint committed in etcd.", func(f jobFigures) float64 { return float64(f.lastCheckpointStep) }},
}

// jobFigures is what the gauges show; zero while standby.
type jobFigures struct {
	generation         uint64
	workers, members   int
	step               int64
	epoch              int
	imagesPerSecond    float64
	trainLoss          float64
	testAccuracy       float64
	lastCheckpointStep int
	// stragglers are the running ring's workers and their flags.
	stragglers []workerFlag
}

type workerFlag struct {
	name string
	flag *api.Straggler
}

func (c *jobCollector) desc(i int) *prometheus.Desc {
	return prometheus.NewDesc(jobGauges[i].name, jobGauges[i].help, nil, nil)
}

// stragglerDesc is the straggler gauge: for each worker of the running
// ring, one series per phase, 1 for the phase it is flagged in, else 0.
var stragglerDesc = prometheus.NewDesc("ringtrain_worker_straggler",
	"1 while the worker is flagged as a straggler in the phase (compute, data or network), else 0.",
	[]string{"worker", "phase"}, nil)

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) {
	for i := range jobGauges {
		ch <- c.desc(i)
	}
	ch <- stragglerDesc
}

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.s.figures()
	for i, g := range jobGauges {
		ch <- prometheus.MustNewConstMetric(c.desc(i), prometheus.GaugeValue, g.value(f))
	}
	for _, w := range f.stragglers {
		for _, phase := range StragglerPhases {
			v := 0.0
			if w.flag != nil && w.flag.Phase == phase {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stragglerDesc, prometheus.GaugeValue, v, w.name, phase)
		}
	}
}

// figures reads the job's gauges.
func (s *Server) figures() jobFigures {
	var f jobFigures
	t := s.leading()
	if t == nil {
		return f
	}
	defer s.mu.Unlock()
	if t.lastCkpt != nil {
		f.lastCheckpointStep = t.lastCkpt.Step
		f.step, f.epoch = int64(t.lastCkpt.Step), t.lastCkpt.Epoch
	}
	if t.lastEval != nil {
		f.testAccuracy = t.lastEval.Accuracy
	}
	f.members = len(t.workers)
	f.imagesPerSecond = t.imagesPerSecond()
	if t.gen == nil {
		return f
	}
	f.generation = t.gen.Number
	if !t.paused {
		f.workers = len(t.gen.Ring)
		for _, p := range t.gen.Ring {
			f.stragglers = append(f.stragglers, workerFlag{p.Name, t.stragglers.Straggler(p.Name)})
		}
	}
	if f.step < t.gen.ResumeStep {
		f.step, f.epoch = t.gen.ResumeStep, t.gen.Epoch
	}
	for rank, p := range t.gen.Ring {
		w := t.workers[p.Name]
		if w == nil || w.gen != t.gen.Number {
			continue
		}
		if w.step > f.step {
			f.step = w.step
			if w.stats != nil {
				f.epoch = w.stats.Epoch
			}
		}
		if rank == 0 && w.stats != nil {
			f.trainLoss = w.stats.Loss
		}
	}
	return f
}
