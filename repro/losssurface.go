package repro

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"

	"gonum.org/v1/gonum/stat"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

func init() {
	register(Experiment{
		Name:  "loss-surface",
		Title: "loss surfaces of one-hidden-layer nets on 10×10 MNIST: the test losses of many seeds fall and concentrate as the net widens",
		Paper: "Choromanska, Henaff, Mathieu, Ben Arous, LeCun 2015 (The loss surfaces of multilayer networks, AISTATS: test-loss histograms over many runs per hidden-layer size, and the train–test loss correlation per size)",
		Run:   runLossSurface,
	})
}

// surfaceSide is the side of the resampled digits.
const surfaceSide = 10

// digitMatrix is a digit set as one matrix: X (N, Side·Side) of normalized
// pixels, row-major, and one label per row.
type digitMatrix struct {
	N, Dim int
	X      []float32 // (N, Dim)
	Y      []int     // (N)
}

// resampleDigits returns the first limit samples of s (all of them when
// limit ≤ 0) area-resampled to side×side, normalized as s normalizes its
// pixels: each output pixel is the mean of the normalized input pixels
// under it, weighted by the area it covers, so a 28×28 image's mean is
// kept. The result is a pure function of s, side and limit.
func resampleDigits(s dataset.Set, side, limit int) (*digitMatrix, error) {
	sh := s.Shape()
	if sh.C != 1 || side < 1 || side > sh.H || side > sh.W {
		return nil, fmt.Errorf("resample %s (%d×%d×%d) to %d×%d: want one channel and a side in [1, %d]", s.Name(), sh.C, sh.H, sh.W, side, side, min(sh.H, sh.W))
	}
	n := s.Len()
	if limit > 0 {
		n = min(n, limit)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	d := &digitMatrix{N: n, Dim: side * side, X: make([]float32, n*side*side), Y: make([]int, n)}
	if err := s.Fill(d.X, d.Y, idx, dataset.Transform{Out: dataset.Shape{C: 1, H: side, W: side}}); err != nil {
		return nil, err
	}
	return d, nil
}

// surfaceConfig is how each net of the study is trained.
type surfaceConfig struct {
	Epochs, Batch int
	LR, Momentum  float64 // cosine decay from LR to 0 over the run
}

// surfaceRun is the outcome of one net.
type surfaceRun struct {
	Width             int
	TrainNLL, TestNLL float64 // mean negative log-likelihood over the whole set
	TestError         float64 // fraction misclassified
}

// shallowNet is the one-hidden-layer ReLU net dim-width-10, PyTorch's
// default initialization drawn from rng.
func shallowNet(rng *rand.Rand, dim, width int) (models.Module, *models.Arena, error) {
	b := models.NewBuilder(rng)
	net := models.Sequential{
		models.NewLinear(b, "fc1", dim, width, models.LayerInit{}), models.ReLU{},
		models.NewLinear(b, "fc2", width, 10, models.LayerInit{}),
	}
	a, err := b.Build()
	return net, a, err
}

// trainShallow trains the dim-width-10 net of seed (seed, stream) on train
// with SGD and returns its losses on train and test. Its kernels run on
// the calling goroutine. It stops early, with ctx's error, when ctx ends.
func trainShallow(ctx context.Context, train, test *digitMatrix, width int, seed, stream uint64, cfg surfaceConfig) (surfaceRun, error) {
	rng := rand.New(rand.NewPCG(seed, stream))
	net, a, err := shallowNet(rng, train.Dim, width)
	if err != nil {
		return surfaceRun{}, err
	}
	opt, err := models.NewSGD(a.Data, a.Grad, models.SGDConfig{Momentum: float32(cfg.Momentum)})
	if err != nil {
		return surfaceRun{}, err
	}
	batches := train.N / cfg.Batch
	if batches < 1 {
		return surfaceRun{}, fmt.Errorf("%d training samples make no batch of %d", train.N, cfg.Batch)
	}
	sched := models.Cosine{Base: cfg.LR, Steps: cfg.Epochs * batches}
	tp := tensorcore.NewTape(nil)
	x, y := tensorcore.New(cfg.Batch, train.Dim), make([]int, cfg.Batch)
	perm := make([]int, train.N)
	for i := range perm {
		perm[i] = i
	}
	step := 0
	for range cfg.Epochs {
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for bi := range batches {
			if err := ctx.Err(); err != nil {
				return surfaceRun{}, err
			}
			for r, i := range perm[bi*cfg.Batch : (bi+1)*cfg.Batch] {
				copy(x.Data[r*train.Dim:(r+1)*train.Dim], train.X[i*train.Dim:(i+1)*train.Dim])
				y[r] = train.Y[i]
			}
			clear(a.Grad)
			tp.Reset()
			logits := net.Forward(models.Ctx{Tape: tp, Training: true}, tp.Const(x))
			tp.Backward(tp.CrossEntropy(logits, y))
			opt.Step(sched.LR(step))
			step++
		}
	}
	run := surfaceRun{Width: width}
	run.TrainNLL, _ = evalShallow(tp, net, train)
	run.TestNLL, run.TestError = evalShallow(tp, net, test)
	if math.IsNaN(run.TrainNLL) || math.IsNaN(run.TestNLL) {
		return run, fmt.Errorf("width %d, seed %d/%d: the loss is NaN", width, seed, stream)
	}
	return run, nil
}

// evalShallow returns net's mean negative log-likelihood and error rate
// on d, in chunks recorded on tp.
func evalShallow(tp *tensorcore.Tape, net models.Module, d *digitMatrix) (nll, errRate float64) {
	const chunk = 1000
	var sum float64
	wrong := 0
	for lo := 0; lo < d.N; lo += chunk {
		hi := min(lo+chunk, d.N)
		tp.Reset()
		x := &tensorcore.Tensor{Shape: []int{hi - lo, d.Dim}, Data: d.X[lo*d.Dim : hi*d.Dim]}
		logits := net.Forward(models.Ctx{Tape: tp}, tp.Const(x))
		sum += float64(tp.CrossEntropy(logits, d.Y[lo:hi]).Value.Data[0]) * float64(hi-lo)
		l := logits.Value.Data
		for r := range hi - lo {
			row := l[r*10 : (r+1)*10]
			if argmax(row) != d.Y[lo+r] {
				wrong++
			}
		}
	}
	return sum / float64(d.N), float64(wrong) / float64(d.N)
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// surfaceTask is one net of the study: its width and its seed's stream.
type surfaceTask struct {
	width  int
	stream uint64
}

// trainAll trains every task, workers at a time, and returns the runs in
// the tasks' order (which goroutine ran a task changes nothing: each net
// draws only from its own seed). done is called on the calling goroutine
// after each net with the number finished. Its goroutines end before it
// returns.
func trainAll(ctx context.Context, train, test *digitMatrix, tasks []surfaceTask, seed uint64, cfg surfaceConfig, workers int, done func(n int)) ([]surfaceRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan int, len(tasks))
	for i := range tasks {
		queue <- i
	}
	close(queue)
	type outcome struct {
		i   int
		run surfaceRun
		err error
	}
	out := make(chan outcome, len(tasks))
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for i := range queue {
				r, err := trainShallow(ctx, train, test, tasks[i].width, seed, tasks[i].stream, cfg)
				out <- outcome{i, r, err}
			}
		})
	}
	runs := make([]surfaceRun, len(tasks))
	var first error
	for n := range tasks {
		o := <-out
		if o.err != nil && first == nil {
			first = o.err
			cancel()
		}
		runs[o.i] = o.run
		if first == nil {
			done(n + 1)
		}
	}
	wg.Wait()
	return runs, first
}

// widthStats sums up the runs of one width.
type widthStats struct {
	Width                  int
	MeanTest, StdTest      float64 // across seeds; StdTest is the sample standard deviation
	MeanTrain, MeanTestErr float64
	Pearson                float64 // correlation of train and test NLL across seeds
	Tests                  []float64
}

// summarize groups runs by width, in the order of widths.
func summarize(runs []surfaceRun, widths []int) []widthStats {
	var out []widthStats
	for _, w := range widths {
		var tr, te, er []float64
		for _, r := range runs {
			if r.Width == w {
				tr, te, er = append(tr, r.TrainNLL), append(te, r.TestNLL), append(er, r.TestError)
			}
		}
		s := widthStats{Width: w, Tests: te, MeanTrain: stat.Mean(tr, nil), MeanTestErr: stat.Mean(er, nil)}
		s.MeanTest, s.StdTest = stat.MeanStdDev(te, nil)
		s.Pearson = stat.Correlation(tr, te, nil)
		out = append(out, s)
	}
	return out
}

func runLossSurface(ctx context.Context, env *Env) (*Result, error) {
	widths := []int{10, 25, 50, 100, 250, 500}
	seeds := 30
	cfg := surfaceConfig{Epochs: 5, Batch: 100, LR: 0.1, Momentum: 0.9}
	trainLimit, testLimit := 0, 0
	if env.Quick {
		seeds, cfg.Epochs, trainLimit, testLimit = 3, 1, 1000, 500
	}
	var sets [2]*digitMatrix
	for i, split := range []string{"train", "test"} {
		s, err := dataset.Open(ctx, "mnist", env.DataDir, split, env.Logf)
		if err != nil {
			return nil, err
		}
		if sets[i], err = resampleDigits(s, surfaceSide, []int{trainLimit, testLimit}[i]); err != nil {
			return nil, err
		}
	}
	var tasks []surfaceTask
	for _, w := range widths {
		for k := range seeds {
			tasks = append(tasks, surfaceTask{width: w, stream: uint64(w)<<32 | uint64(k)})
		}
	}
	workers := env.Threads
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	runs, err := trainAll(ctx, sets[0], sets[1], tasks, env.Seed, cfg, workers, func(n int) { env.progress(float64(n) / float64(len(tasks))) })
	if err != nil {
		return nil, err
	}
	st := summarize(runs, widths)
	byWidth := func(w int) widthStats {
		return st[slices.IndexFunc(st, func(s widthStats) bool { return s.Width == w })]
	}

	// The claims: the mean falls with width (over 10…100, the issue's
	// widths, and over all run), the spread at 100 is at most half that
	// at 10.
	falls := func(upTo int) (bool, string) {
		ok, parts := true, []string{}
		for i, s := range st {
			if s.Width > upTo {
				break
			}
			if i > 0 && !(s.MeanTest < st[i-1].MeanTest) {
				ok = false
			}
			parts = append(parts, fmt.Sprintf("%.4f", s.MeanTest))
		}
		return ok, strings.Join(parts, " → ")
	}
	fall100, fall100s := falls(100)
	fallAll, fallAlls := falls(math.MaxInt)
	s10, s100 := byWidth(10), byWidth(100)
	ratio := s100.StdTest / s10.StdTest
	pearsonFalls := st[len(st)-1].Pearson < st[0].Pearson
	var pears []string
	for _, s := range st {
		pears = append(pears, fmt.Sprintf("%.2f", s.Pearson))
	}
	claims := []Claim{
		{What: "mean test NLL over seeds, widths 10 → 25 → 50 → 100", Paper: "test losses fall as the hidden layer grows", Target: "strictly decreasing", Ours: fall100s, Pass: fall100},
		{What: "across-seed std of test NLL, width 100 / width 10", Paper: "test losses concentrate as the hidden layer grows", Target: "≤ 0.50×",
			Ours: fmt.Sprintf("%.2f× (%.4f / %.4f)", ratio, s100.StdTest, s10.StdTest), Pass: ratio <= 0.5},
		{What: fmt.Sprintf("mean test NLL, widths %s", joinInts(widths, " → ")), Paper: "test losses fall as the hidden layer grows", Target: "strictly decreasing", Ours: fallAlls, Pass: fallAll, Stretch: true},
		{What: fmt.Sprintf("Pearson(train NLL, test NLL) across seeds, widths %s", joinInts(widths, " → ")), Paper: "the correlation of train and test loss falls as the nets grow", Target: "last below first",
			Ours: strings.Join(pears, " → "), Pass: pearsonFalls, Stretch: true},
	}

	var table strings.Builder
	table.WriteString("| width | runs | mean test NLL | std test NLL | mean train NLL | mean test error | Pearson(train, test) |\n|---|---|---|---|---|---|---|\n")
	for _, s := range st {
		fmt.Fprintf(&table, "| %d | %d | %.4f | %.4f | %.4f | %.2f%% | %.3f |\n", s.Width, len(s.Tests), s.MeanTest, s.StdTest, s.MeanTrain, 100*s.MeanTestErr, s.Pearson)
	}

	names := make([]string, len(st))
	samples := make([][]float64, len(st))
	for i, s := range st {
		names[i], samples[i] = fmt.Sprintf("%d hidden units", s.Width), s.Tests
	}
	fig, err := Histograms(env, "test-loss-histograms.png", "test NLL of every run, one histogram per width (the paper's histograms of test loss)",
		fmt.Sprintf("10×10 MNIST, one hidden ReLU layer: test NLL of %d seeds per width", seeds), "test NLL", names, samples, 60)
	if err != nil {
		return nil, err
	}
	return &Result{
		Claims:  claims,
		Figures: []Figure{fig},
		Notes: []string{
			fmt.Sprintf("Setup: MNIST area-resampled to 10×10 (each output pixel the area-weighted mean of the normalized 28×28 pixels under it), nets 100-width-10 with one ReLU hidden layer and PyTorch's default initialization, %d seeds per width, each with its own initialization and shuffling. Each net is trained by SGD with momentum %g, batch %d, lr %g decayed along a cosine to 0 over %d epochs of the %d training digits; NLL is the mean cross-entropy over the whole training set and the %d test digits after training.",
				seeds, cfg.Momentum, cfg.Batch, cfg.LR, cfg.Epochs, sets[0].N, sets[1].N),
			table.String(),
			"Deviations: the paper pooled far more nets per size in its histograms, trained with its own SGD settings and sizes from 25 hidden units up; here 30 seeds per width and a fixed budget of epochs, the same for every width. Spread is the sample standard deviation across seeds.",
		},
	}, nil
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, sep)
}
