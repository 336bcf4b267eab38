package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// BenchResult is the training throughput of a model measured by Bench.
type BenchResult struct {
	Model     string    `json:"model"`
	BatchSize int       `json:"batch_size"`
	Threads   int       `json:"threads"`
	Steps     int       `json:"steps"`
	Repeats   int       `json:"repeats"`
	Median    float64   `json:"images_per_second"`
	Min       float64   `json:"images_per_second_min"`
	Max       float64   `json:"images_per_second_max"`
	Samples   []float64 `json:"samples"`
	// StepMillis is the median time of one training step.
	StepMillis float64 `json:"step_ms"`
	// Timeline reports whether the steps were recorded in a timeline.
	Timeline bool `json:"timeline"`
	// Precision is what the products were computed in (BenchModel).
	Precision string `json:"precision,omitempty"`
	// Layers is where a step's time goes, by op and shape, on one core
	// (BenchModel with Layers); TrainFLOP is the GEMM arithmetic of one
	// image's training step.
	Layers    []LayerFigure `json:"layers,omitempty"`
	TrainFLOP float64       `json:"train_flop_per_image,omitempty"`
}

// LayerFigure is the time of the ops of one kind and shape in a step of
// one core's tape, summed over their occurrences.
type LayerFigure struct {
	Op     string  `json:"op"`
	Detail string  `json:"detail"`
	Count  int     `json:"count"`       // occurrences in the net
	FwdMs  float64 `json:"forward_ms"`  // per step
	BwdMs  float64 `json:"backward_ms"` // per step
	GFLOP  float64 `json:"gflop"`       // forward + backward, per step
	Rate   float64 `json:"gflop_per_s"` // GFLOP / (forward + backward time)
}

// BenchOptions configure Bench.
type BenchOptions struct {
	// Steps is the steps of one timed window, Repeats the windows.
	Steps, Repeats int
	// Layers profiles the ops of the first core's tape over the timed
	// steps (BenchModel).
	Layers bool
	// Warmup is the untimed steps before them (BenchModel; at least 1,
	// which lets the tape allocate its buffers). Bench warms up for 10
	// steps or a tenth of Steps.
	Warmup int
	// TimelineDir, when set, has the steps recorded in a timeline there,
	// as training records them.
	TimelineDir string
	// Logf prints notices (a data download); nil prints nothing.
	Logf func(string, ...any)
}

// Bench measures training throughput: it runs the job's model on real
// training batches (forward, backward, optimizer step, as Train does) for
// warm-up steps, then times repeats windows of steps each and reports
// images per second over them. Data loading is included, evaluation and
// checkpointing are not.
func Bench(ctx context.Context, spec job.Spec, o BenchOptions) (BenchResult, error) {
	steps, repeats, logf := o.Steps, o.Repeats, o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := CheckJob(spec); err != nil {
		return BenchResult{}, err
	}
	if steps < 1 || repeats < 1 {
		return BenchResult{}, fmt.Errorf("worker: bench needs at least one step and one repeat, got %d and %d", steps, repeats)
	}
	l, err := newBenchLoop(ctx, spec, logf)
	if err != nil {
		return BenchResult{}, err
	}
	defer l.close()
	if o.TimelineDir != "" {
		defer openTimeline(l.e, o.TimelineDir, "bench", logf)()
	}
	res := BenchResult{Model: spec.Model, BatchSize: spec.BatchSize, Threads: l.e.threads, Timeline: l.e.tl != nil}
	return timeSteps(ctx, res, l.step, max(10, steps/10), steps, repeats)
}

// BenchModel measures training throughput as Bench does, but on one fixed
// batch of random images and labels held in memory (no data set is read),
// for a model built for cfg: the compute of a training step alone
// (forward, loss, backward, the gradient summed over the cores, the
// optimizer step), as a side-by-side with another framework times it.
func BenchModel(ctx context.Context, spec job.Spec, cfg models.Config, o BenchOptions) (BenchResult, error) {
	if err := CheckJob(spec); err != nil {
		return BenchResult{}, err
	}
	if o.Steps < 1 || o.Repeats < 1 {
		return BenchResult{}, fmt.Errorf("worker: bench needs at least one step and one repeat, got %d and %d", o.Steps, o.Repeats)
	}
	m, err := models.BuildFor(spec.Model, spec.Seed, cfg)
	if err != nil {
		return BenchResult{}, err
	}
	opt, err := models.NewOptimizer(spec.Optimizer, m.Arena)
	if err != nil {
		return BenchResult{}, err
	}
	threads := spec.Threads
	if threads == 0 {
		threads = defaultThreads()
	}
	pool := tensorcore.NewPool(threads)
	defer pool.Close()
	models.UsePool(opt, pool)
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	usePrecision(pool, spec.Precision, logf)
	in := dataset.Shape{C: m.InputShape[0], H: m.InputShape[1], W: m.InputShape[2]}
	loss, err := models.NewLoss(spec.Loss, float32(spec.LabelSmoothing))
	if err != nil {
		return BenchResult{}, err
	}
	c, err := newCompute(m, pool, threads, spec.BatchSize, spec.Accumulate, spec.Seed, loss, in)
	if err != nil {
		return BenchResult{}, err
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(spec.Seed, 0x62656e6368)) // "bench"
	x := make([]float32, spec.BatchSize*in.Size())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]int, spec.BatchSize)
	for i := range y {
		y[i] = rng.IntN(m.NumClasses)
	}
	lr, n := float32(spec.Optimizer.LR), 0
	step := func() error {
		n++
		c.step(n, x, y, nil)
		opt.Step(lr)
		return nil
	}
	res := BenchResult{Model: spec.Model, BatchSize: spec.BatchSize, Threads: threads, Precision: pool.Precision().String()}
	if !o.Layers {
		return timeSteps(ctx, res, step, max(o.Warmup, 1), o.Steps, o.Repeats)
	}
	var prof tensorcore.Profile
	warm := step
	warmed := 0
	step = func() error {
		if warmed++; warmed == max(o.Warmup, 1)+1 {
			c.firstTape().SetProfile(&prof)
		}
		return warm()
	}
	res, err = timeSteps(ctx, res, step, max(o.Warmup, 1), o.Steps, o.Repeats)
	if err != nil {
		return res, err
	}
	res.Layers, res.TrainFLOP = layerFigures(prof, c.firstBatch(spec.BatchSize))
	return res, nil
}

// layerFigures sums a profile by op and shape, per step, the costliest
// first, and gives the GEMM arithmetic of one image's training step
// (the profiled tape ran batch images a step).
func layerFigures(p tensorcore.Profile, batch int) ([]LayerFigure, float64) {
	type key struct{ op, detail string }
	byKey := map[key]*LayerFigure{}
	var order []key
	var flop float64
	for _, op := range p.Ops {
		if op.Steps == 0 {
			continue
		}
		k := key{op.Op, op.Detail}
		f, ok := byKey[k]
		if !ok {
			f = &LayerFigure{Op: op.Op, Detail: op.Detail}
			byKey[k] = f
			order = append(order, k)
		}
		steps := float64(op.Steps)
		f.Count++
		f.FwdMs += op.Forward.Seconds() * 1e3 / steps
		f.BwdMs += op.Backward.Seconds() * 1e3 / steps
		f.GFLOP += (op.FwdFLOP + op.BwdFLOP) / 1e9
		flop += op.FwdFLOP + op.BwdFLOP
	}
	out := make([]LayerFigure, 0, len(order))
	for _, k := range order {
		f := byKey[k]
		if t := (f.FwdMs + f.BwdMs) / 1e3; t > 0 {
			f.Rate = f.GFLOP / t
		}
		out = append(out, *f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].FwdMs+out[i].BwdMs > out[j].FwdMs+out[j].BwdMs })
	return out, flop / float64(max(batch, 1))
}

// timeSteps runs step for warmup steps, then times repeats windows of
// steps each, and fills res with images per second over them.
func timeSteps(ctx context.Context, res BenchResult, step func() error, warmup, steps, repeats int) (BenchResult, error) {
	b := res.BatchSize
	res.Steps, res.Repeats = steps, repeats
	for i := 0; i < warmup; i++ {
		if err := step(); err != nil {
			return BenchResult{}, err
		}
	}
	for r := 0; r < repeats; r++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		start := time.Now()
		for i := 0; i < steps; i++ {
			if err := step(); err != nil {
				return res, err
			}
		}
		res.Samples = append(res.Samples, float64(steps*b)/time.Since(start).Seconds())
	}
	sorted := append([]float64(nil), res.Samples...)
	sort.Float64s(sorted)
	res.Median = median(sorted)
	res.Min, res.Max = sorted[0], sorted[len(sorted)-1]
	res.StepMillis = 1000 * float64(b) / res.Median
	return res, nil
}

// benchLoop runs training steps of whole batches on one engine, in a ring
// of one, as Bench times them.
type benchLoop struct {
	ctx  context.Context
	e    *engine
	pipe *pipeline
}

func newBenchLoop(ctx context.Context, spec job.Spec, logf func(string, ...any)) (*benchLoop, error) {
	e, err := newEngine(ctx, spec, spec.BatchSize, logf)
	if err != nil {
		return nil, err
	}
	e.sched = models.ConstantLR{Base: spec.Optimizer.LR}
	return &benchLoop{ctx: ctx, e: e}, nil
}

// step runs one training step. Whole batches only, so every step is
// alike: an epoch's short last step is skipped for the next epoch's first.
func (l *benchLoop) step() error {
	e, b := l.e, l.e.spec.BatchSize
	if l.pipe == nil || e.pos.Epoch != e.orderEp || e.train.Len()-e.pos.Consumed < b {
		if l.pipe != nil {
			l.pipe.stop()
		}
		e.pos = dataset.Position{Epoch: e.orderEp + 1}
		if err := e.ensureOrder(); err != nil {
			return err
		}
		l.pipe = startPipeline(e.train, e.order, 0, b, 0, 1, e.trainTransform(e.pos.Epoch), e.spec.DataThreads)
	}
	_, err := e.trainStep(l.ctx, ring{rank: 0, world: 1}, l.pipe, hooks{})
	return err
}

func (l *benchLoop) close() {
	if l.pipe != nil {
		l.pipe.stop()
	}
	l.e.Close()
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
