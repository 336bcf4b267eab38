package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/runlog"
)

var (
	mnistOnce sync.Once
	mnistDir  string
	mnistErr  error
)

// realMNIST makes the real MNIST available once for the package's tests.
func realMNIST(t testing.TB) string {
	t.Helper()
	mnistOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ringtrain-worker-mnist")
		if err != nil {
			mnistErr = err
			return
		}
		mnistDir = dir
		mnistErr = dataset.EnsureMNIST(context.Background(), dir, t.Logf)
	})
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	return mnistDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mnistDir != "" {
		os.RemoveAll(mnistDir)
	}
	os.Exit(code)
}

func smallSpec(t *testing.T, model string) job.Spec {
	s := job.Default()
	s.Model, s.DataDir, s.Epochs, s.BatchSize, s.Seed, s.Threads = model, realMNIST(t), 2, 32, 11, 2
	s.Optimizer.LR = 0.05
	s.TrainLimit, s.TestLimit = 1000, 500
	return s
}

func run(t *testing.T, ctx context.Context, spec job.Spec, dir string, resume bool, p Progress) (runlog.Summary, error) {
	t.Helper()
	return Train(ctx, Options{Spec: spec, RunDir: dir, Resume: resume, Progress: p, Logf: t.Logf})
}

func TestTrainLearnsAndWritesRunDir(t *testing.T) {
	dir := t.TempDir()
	sum, err := run(t, context.Background(), smallSpec(t, "lenet5"), dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 2 epochs of 1000 real digits: far above chance (10%).
	if sum.TestAccuracy < 0.75 {
		t.Errorf("test accuracy %.3f after 2 epochs of 1000 digits", sum.TestAccuracy)
	}
	if sum.Steps != 2*32 || sum.Model != "lenet5" || sum.PeakRSSBytes <= 0 || sum.ImagesPerSecond <= 0 {
		t.Errorf("summary %+v", sum)
	}
	for _, f := range []string{runlog.MetricsFile, runlog.PlotFile, runlog.SummaryFile, "checkpoints/ringtrain/latest", "checkpoints/ringtrain/job.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	back, err := runlog.ReadSummary(dir)
	if err != nil || back.TestAccuracy != sum.TestAccuracy {
		t.Errorf("summary.json = %+v, %v", back, err)
	}
	// The final model, as one file, is the last checkpoint's.
	final, err := os.ReadFile(filepath.Join(dir, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(final, modelBytes(t, dir)) {
		t.Error("model.safetensors differs from the last checkpoint's model")
	}
	// A second run into the same directory must not clobber the first.
	if _, err := run(t, context.Background(), smallSpec(t, "lenet5"), dir, false, nil); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("second run into a used directory: %v", err)
	}
}

// stopAfter cancels the run after a number of steps.
type stopAfter struct {
	n      int
	cancel context.CancelFunc
}

func (s *stopAfter) EpochStart(int, int, int, int) {}
func (s *stopAfter) EpochEnd(EvalStats)            {}
func (s *stopAfter) Step(st StepStats) {
	if st.Step == s.n {
		s.cancel()
	}
}

func modelBytes(t *testing.T, runDir string) []byte {
	t.Helper()
	st, err := checkpoint.OpenShared(runStoreDir(t, runDir))
	if err != nil {
		t.Fatal(err)
	}
	name, err := st.Latest()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(st.Dir(), name, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logLines keeps what a run says through Options.Logf.
type logLines struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.t.Helper()
	l.t.Logf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// find returns the first line containing s, or "".
func (l *logLines) find(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// latestCheckpoint loads the newest committed checkpoint of a run directory.
func latestCheckpoint(t *testing.T, runDir string) *checkpoint.Checkpoint {
	t.Helper()
	st, err := checkpoint.OpenShared(runStoreDir(t, runDir))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := st.LoadLatest(t.Logf)
	if err != nil || ck == nil {
		t.Fatalf("%s: no checkpoint to load: %v", runDir, err)
	}
	return ck
}

// sameFinalState fails t unless the newest checkpoints of two run
// directories are at the same step and hold the same files, each with the
// same metadata and the same tensors: the same names, and for each the
// same dtype, shape and bytes. Both must hold model and optimizer state.
// eventsMirrorRecords checks that the run directory holds one ringtrain
// event file and that it holds the scalars of metrics.jsonl, record for
// record.
func eventsMirrorRecords(t *testing.T, dir string) {
	t.Helper()
	files, err := runlog.EventFiles(dir)
	if err != nil || len(files) != 1 {
		t.Fatalf("event files in %s: %v, %v; want one", dir, files, err)
	}
	events, err := runlog.ReadEvents(files[0])
	if err != nil {
		t.Fatal(err)
	}
	rs, err := runlog.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(rs)+1 || events[0].FileVersion != runlog.FileVersion {
		t.Fatalf("event file holds %d events, want the version event and one per record of metrics.jsonl (%d)", len(events), len(rs))
	}
	for i, r := range rs {
		tag := map[string]string{"train": "train/loss", "eval": "test/loss"}[r.Kind]
		if ev := events[i+1]; ev.Step != int64(r.Step) || len(ev.Scalars) == 0 || ev.Scalars[0] != (runlog.Scalar{Tag: tag, Value: float32(r.Loss)}) {
			t.Errorf("event %d: step %d, scalars %v; metrics.jsonl has %s at step %d, loss %v", i+1, ev.Step, ev.Scalars, r.Kind, r.Step, r.Loss)
		}
	}
}

func sameFinalState(t *testing.T, wantDir, gotDir string) {
	t.Helper()
	want, got := latestCheckpoint(t, wantDir), latestCheckpoint(t, gotDir)
	if want.Manifest.Step != got.Manifest.Step {
		t.Fatalf("final checkpoints at steps %d and %d", want.Manifest.Step, got.Manifest.Step)
	}
	wantFiles, gotFiles := slices.Sorted(maps.Keys(want.Files)), slices.Sorted(maps.Keys(got.Files))
	if !slices.Equal(wantFiles, gotFiles) {
		t.Fatalf("final checkpoints hold files %v and %v", wantFiles, gotFiles)
	}
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		if sf := want.Files[f]; sf == nil || sf.Len() == 0 {
			t.Fatalf("final checkpoint has no tensors in %s", f)
		}
	}
	for _, f := range wantFiles {
		w, g := want.Files[f], got.Files[f]
		if !maps.Equal(w.Metadata, g.Metadata) {
			t.Errorf("%s: metadata %v, uninterrupted run %v", f, g.Metadata, w.Metadata)
		}
		if !slices.Equal(w.Names(), g.Names()) {
			t.Errorf("%s: tensors %v, uninterrupted run %v", f, g.Names(), w.Names())
			continue
		}
		for _, name := range w.Names() {
			a, _ := w.Tensor(name)
			b, _ := g.Tensor(name)
			if a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || !bytes.Equal(a.Data, b.Data) {
				t.Errorf("%s: tensor %s differs from the uninterrupted run's", f, name)
			}
		}
	}
}

// TestResumeIsBitIdentical interrupts a run mid-epoch, resumes it, and
// checks that it continues from exactly where it stopped and ends with
// exactly the model and optimizer state of an uninterrupted run.
func TestResumeIsBitIdentical(t *testing.T) {
	const stopAt = 45 // mid-epoch 2: an epoch is 32 steps
	for _, tc := range []struct{ name, model, optimizer string }{
		// mlp: the plain case; vgg: dropout masks and BatchNorm running
		// statistics must resume exactly too; adam: two moment buffers and
		// a bias correction that counts steps.
		{"mlp", "mlp", "sgd"},
		{"vgg", "vgg", "sgd"},
		{"mlp-adam", "mlp", "adam"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := smallSpec(t, tc.model)
			spec.Optimizer.Name = tc.optimizer
			if tc.optimizer == "adam" {
				spec.Optimizer.LR, spec.Optimizer.Momentum = 0.001, 0
			}
			whole := t.TempDir()
			want, err := run(t, context.Background(), spec, whole, false, nil)
			if err != nil {
				t.Fatal(err)
			}

			split := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stopped, err := run(t, ctx, spec, split, false, &stopAfter{n: stopAt, cancel: cancel})
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("interrupted run returned %v", err)
			}
			// The run stops where it stood and commits a checkpoint there,
			// not only the one of the epoch before.
			ckpt := checkpoint.NameForStep(stopAt)
			if !stopped.Interrupted || stopped.Steps != stopAt || stopped.Checkpoint != ckpt || !strings.Contains(err.Error(), ckpt+" is committed") {
				t.Fatalf("interrupted run: %v; summary %+v", err, stopped)
			}
			said := &logLines{t: t}
			got, err := Train(context.Background(), Options{Spec: spec, RunDir: split, Resume: true, Logf: said.logf})
			if err != nil {
				t.Fatal(err)
			}
			if line := said.find("resuming from "); !strings.HasPrefix(line, "resuming from "+ckpt+" (") || !strings.HasSuffix(line, fmt.Sprintf("; step %d)", stopAt)) {
				t.Errorf("resumed run says %q, want it to resume from %s at step %d", line, ckpt, stopAt)
			}
			if !got.Resumed || got.Steps != want.Steps {
				t.Fatalf("resumed run: %+v", got)
			}
			if got.TestLoss != want.TestLoss || got.TestAccuracy != want.TestAccuracy {
				t.Errorf("resumed run ends at loss %v acc %v, uninterrupted %v %v", got.TestLoss, got.TestAccuracy, want.TestLoss, want.TestAccuracy)
			}
			sameFinalState(t, whole, split)
			// TensorBoard's view of the resumed run: its metrics once each.
			eventsMirrorRecords(t, split)
		})
	}
}

func TestSameSeedSameCurve(t *testing.T) {
	spec := smallSpec(t, "mlp")
	spec.Epochs = 1
	var curves [2][]float64
	for i := range curves {
		dir := t.TempDir()
		if _, err := run(t, context.Background(), spec, dir, false, nil); err != nil {
			t.Fatal(err)
		}
		l, err := runlog.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.Records() {
			curves[i] = append(curves[i], r.Loss)
		}
		l.Close()
	}
	if len(curves[0]) == 0 || len(curves[0]) != len(curves[1]) {
		t.Fatalf("curves %v and %v", curves[0], curves[1])
	}
	for i := range curves[0] {
		if curves[0][i] != curves[1][i] {
			t.Fatalf("loss %d: %v then %v with the same seed", i, curves[0][i], curves[1][i])
		}
	}
}

func TestBadJobsFailClearly(t *testing.T) {
	for _, tc := range []struct {
		edit func(*job.Spec)
		want string
	}{
		{func(s *job.Spec) { s.Model = "lenet6" }, "lenet6"},
		{func(s *job.Spec) { s.Dataset = "cifar" }, "cifar"},
		{func(s *job.Spec) { s.Optimizer.Name = "sdg" }, "sdg"},
		{func(s *job.Spec) { s.Epochs = 0 }, "epochs"},
	} {
		s := smallSpec(t, "mlp")
		tc.edit(&s)
		_, err := run(t, context.Background(), s, t.TempDir(), false, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v", tc.want, err)
		}
	}
}

func TestBenchReportsEveryRepeat(t *testing.T) {
	spec := smallSpec(t, "mlp")
	res, err := Bench(context.Background(), spec, BenchOptions{Steps: 5, Repeats: 3, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Samples) != 3 || res.Median <= 0 || res.Min > res.Median || res.Max < res.Median || res.Threads != 2 {
		t.Fatalf("bench result %+v", res)
	}
	if _, err := Bench(context.Background(), spec, BenchOptions{Steps: 0, Repeats: 1, Logf: t.Logf}); err == nil {
		t.Fatal("zero steps accepted")
	}
}

// BenchModel trains on a batch in memory and, with Layers, says where the
// first core's step goes: every op of the net, its GEMM arithmetic, one
// image's training arithmetic.
func TestBenchModelLayers(t *testing.T) {
	spec := job.Default()
	spec.Model, spec.BatchSize, spec.Threads = "lenet5", 32, 2
	res, err := BenchModel(context.Background(), spec, models.Config{}, BenchOptions{Steps: 2, Repeats: 2, Layers: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Samples) != 2 || res.Median <= 0 || res.Threads != 2 {
		t.Fatalf("bench result %+v", res)
	}
	count := map[string]int{}
	for _, l := range res.Layers {
		count[l.Op] += l.Count
		if l.FwdMs < 0 || l.BwdMs < 0 || (l.GFLOP > 0) != (l.Op == "Conv2D" || l.Op == "Linear") {
			t.Errorf("layer %+v", l)
		}
	}
	if count["Conv2D"] != 2 || count["Linear"] != 3 || count["MaxPool2D"] != 2 || count["ReLU"] != 4 {
		t.Errorf("ops counted %v", count)
	}
	// c1 forward only (no input gradient), c2 and the linear layers forward
	// and both backward GEMMs, over the first replica's 16 images.
	c1 := 2.0 * 6 * 28 * 28 * 25
	c2 := 2.0 * 16 * 10 * 10 * 6 * 25
	fc := 2.0 * (400*120 + 120*84 + 84*10)
	if want := 2*c1 + 3*c2 + 3*fc; math.Abs(res.TrainFLOP-want) > 1e-6*want {
		t.Errorf("training arithmetic %v an image, want %v", res.TrainFLOP, want)
	}
}

// TestValidationHoldsOutTrainingDigits checks that validation: N trains
// on the training split less its last N digits and evaluates on those N,
// and that holding out the whole split is refused.
func TestValidationHoldsOutTrainingDigits(t *testing.T) {
	spec := smallSpec(t, "lenet5")
	spec.TrainLimit, spec.TestLimit, spec.Validation = 0, 0, 5000
	e, err := newEngine(context.Background(), spec, spec.BatchSize, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.train.Len() != 55000 || e.test.Len() != 5000 {
		t.Fatalf("validation 5000: %d training and %d evaluated digits, want 55000 and 5000", e.train.Len(), e.test.Len())
	}
	all, err := dataset.Open(context.Background(), "mnist", spec.DataDir, "train", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	tf := dataset.Transform{Out: all.Shape()}
	x, y := make([]float32, 2*tf.Out.Size()), make([]int, 2)
	wx, wy := make([]float32, len(x)), make([]int, 2)
	if err := e.test.Fill(x, y, []int{0, 4999}, tf); err != nil {
		t.Fatal(err)
	}
	if err := all.Fill(wx, wy, []int{55000, 59999}, tf); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x, wx) || !slices.Equal(y, wy) {
		t.Error("the evaluated digits are not the training split's last")
	}
	if n, err := dataset.TrainSamples("mnist", spec.Validation, 0); err != nil || n != e.train.Len() {
		t.Errorf("TrainSamples with the hold-out = %d, %v; the engine trains on %d", n, err, e.train.Len())
	}
	spec.Validation = 60000
	if _, err := newEngine(context.Background(), spec, spec.BatchSize, t.Logf); err == nil || !strings.Contains(err.Error(), "cannot hold out 60000 of 60000") {
		t.Errorf("holding out every training digit: %v", err)
	}
}
