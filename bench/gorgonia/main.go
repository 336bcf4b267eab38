// Command gorgonia-bench trains LeNet-5 (or the 784-300-100-10 MLP) with
// Gorgonia on the real MNIST and prints one JSON line with its training
// throughput, so that ringtrain's `bench train` can be compared with it
// side by side (see compare.sh).
//
// The networks match ringtrain's model zoo entries "lenet5" and "mlp":
//
//	lenet5: conv 1→6 5×5 pad 2 (+bias), ReLU, max-pool 2; conv 6→16 5×5
//	        (+bias), ReLU, max-pool 2; flatten; linear 400→120, ReLU;
//	        120→84, ReLU; 84→10. 61,706 parameters.
//	mlp:    linear 784→300, ReLU; 300→100, ReLU; 100→10. 266,610 parameters.
//	mlp800: linear 784→800, ReLU; 800→10 (Gorgonia only: the network of the
//	        project's anchor figure, to check this program against it).
//
// The loss is the mean softmax cross-entropy over the batch and the solver
// Gorgonia's Momentum (v = μv − ηg; w += v), which equals SGD with momentum
// (no dampening) at a constant learning rate.
//
// Timing: after --warmup steps, consecutive windows of --steps steps are
// timed; the reported images_per_second is the median over the windows.
// Without --epochs, --repeat windows are timed; with --epochs, the run
// trains that many full epochs (its windows are the whole ones that fit
// after the warm-up) and then reports the test accuracy. A step includes
// copying the batch into the input tensors, as in ringtrain's bench.
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

type config struct {
	model    string
	dataDir  string
	threads  int
	batch    int
	steps    int
	repeat   int
	warmup   int
	epochs   int
	lr       float64
	momentum float64
	seed     uint64
}

type result struct {
	Framework       string    `json:"framework"`
	Model           string    `json:"model"`
	Threads         int       `json:"threads"`
	BatchSize       int       `json:"batch_size"`
	WarmupSteps     int       `json:"warmup_steps"`
	Steps           int       `json:"steps"`
	Repeats         int       `json:"repeats"`
	Median          float64   `json:"images_per_second"`
	Min             float64   `json:"images_per_second_min"`
	Max             float64   `json:"images_per_second_max"`
	Samples         []float64 `json:"samples"`
	StepMillis      float64   `json:"step_ms"`
	Epochs          int       `json:"epochs,omitempty"`
	TestAccuracy    *float64  `json:"test_accuracy,omitempty"`
	FinalLoss       float64   `json:"final_loss"`
	Params          int       `json:"params"`
	PeakRSSBytes    int64     `json:"peak_rss_bytes"`
	GorgoniaVersion string    `json:"gorgonia_version"`
	GoVersion       string    `json:"go_version"`
}

func main() {
	var c config
	home, _ := os.UserHomeDir()
	flag.StringVar(&c.model, "model", "lenet5", "network: lenet5, mlp or mlp800")
	flag.StringVar(&c.dataDir, "data-dir", filepath.Join(home, ".cache", "ringtrain", "mnist"), "folder with the four MNIST IDX .gz files")
	flag.IntVar(&c.threads, "threads", 0, "runtime.GOMAXPROCS (0: leave as is)")
	flag.IntVar(&c.batch, "batch-size", 64, "images per step")
	flag.IntVar(&c.steps, "steps", 100, "steps per timed window")
	flag.IntVar(&c.repeat, "repeat", 5, "timed windows (without --epochs)")
	flag.IntVar(&c.warmup, "warmup", 20, "untimed steps before the first window")
	flag.IntVar(&c.epochs, "epochs", 0, "train this many full epochs and report the test accuracy (0: time --repeat windows only)")
	flag.Float64Var(&c.lr, "lr", 0.03, "learning rate")
	flag.Float64Var(&c.momentum, "momentum", 0.9, "momentum (0: plain SGD)")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the initial weights and the data order")
	flag.Parse()
	if c.threads > 0 {
		runtime.GOMAXPROCS(c.threads)
	}
	res, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorgonia-bench:", err)
		os.Exit(1)
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorgonia-bench:", err)
		os.Exit(1)
	}
	fmt.Println(string(b))
}

func run(c config) (result, error) {
	if c.batch < 1 || c.steps < 1 || c.repeat < 1 || c.warmup < 0 || c.epochs < 0 {
		return result{}, errors.New("need --batch-size, --steps, --repeat >= 1 and --warmup, --epochs >= 0")
	}
	trainX, trainY, err := loadMNIST(c.dataDir, "train")
	if err != nil {
		return result{}, err
	}
	testX, testY, err := loadMNIST(c.dataDir, "t10k")
	if err != nil {
		return result{}, err
	}
	rng := rand.New(rand.NewPCG(c.seed, 0x5eed))
	n, err := build(c.model, c.batch, rng)
	if err != nil {
		return result{}, err
	}
	vm := G.NewTapeMachine(n.g, G.BindDualValues(n.params...))
	defer vm.Close()
	var solver G.Solver
	if c.momentum != 0 {
		solver = G.NewMomentum(G.WithLearnRate(c.lr), G.WithMomentum(c.momentum))
	} else {
		solver = G.NewVanillaSolver(G.WithLearnRate(c.lr))
	}
	grads := G.NodesToValueGrads(n.params)

	const pixels = 28 * 28
	nTrain := len(trainY)
	perm := make([]int, nTrain)
	for i := range perm {
		perm[i] = i
	}
	stepsPerEpoch := nTrain / c.batch
	pos := stepsPerEpoch // forces a shuffle before the first step
	var lastLoss float64
	step := func() error {
		if pos == stepsPerEpoch {
			rng.Shuffle(nTrain, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			pos = 0
		}
		idx := perm[pos*c.batch : (pos+1)*c.batch]
		pos++
		fillBatch(n.xData, n.yData, trainX, trainY, idx, pixels)
		if err := vm.RunAll(); err != nil {
			return fmt.Errorf("train step: %w", err)
		}
		if err := solver.Step(grads); err != nil {
			return fmt.Errorf("solver step: %w", err)
		}
		lastLoss = float64(n.lossVal.Data().(float32))
		vm.Reset()
		return nil
	}

	totalSteps := c.warmup + c.repeat*c.steps
	windows := c.repeat
	if c.epochs > 0 {
		totalSteps = c.epochs * stepsPerEpoch
		windows = (totalSteps - c.warmup) / c.steps
		if windows < 1 {
			return result{}, fmt.Errorf("%d epochs of %d steps leave no timed window of %d steps after %d warm-up steps", c.epochs, stepsPerEpoch, c.steps, c.warmup)
		}
	}
	samples := make([]float64, 0, windows)
	done := 0
	for ; done < c.warmup; done++ {
		if err := step(); err != nil {
			return result{}, err
		}
	}
	for w := 0; w < windows; w++ {
		start := time.Now()
		for i := 0; i < c.steps; i++ {
			if err := step(); err != nil {
				return result{}, err
			}
		}
		samples = append(samples, float64(c.steps*c.batch)/time.Since(start).Seconds())
		done += c.steps
	}
	for ; done < totalSteps; done++ {
		if err := step(); err != nil {
			return result{}, err
		}
	}
	if math.IsNaN(lastLoss) {
		return result{}, errors.New("training diverged: the loss is NaN")
	}

	res := result{
		Framework: "gorgonia", Model: c.model, Threads: runtime.GOMAXPROCS(0),
		BatchSize: c.batch, WarmupSteps: c.warmup, Steps: c.steps, Repeats: windows, Samples: samples,
		Epochs: c.epochs, FinalLoss: lastLoss, Params: n.paramCount(),
		GorgoniaVersion: "v0.9.18", GoVersion: runtime.Version(),
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	res.Median = median(sorted)
	res.Min, res.Max = sorted[0], sorted[len(sorted)-1]
	res.StepMillis = 1000 * float64(c.batch) / res.Median
	if c.epochs > 0 {
		acc, err := evaluate(vm, n, testX, testY, c.batch)
		if err != nil {
			return result{}, err
		}
		res.TestAccuracy = &acc
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		res.PeakRSSBytes = ru.Maxrss * 1024 // Linux reports KiB
	}
	return res, nil
}

func median(sorted []float64) float64 {
	m := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[m]
	}
	return (sorted[m-1] + sorted[m]) / 2
}

// fillBatch writes images idx (scaled to [0, 1]) into x and their one-hot
// labels into y.
func fillBatch(x, y []float32, images []byte, labels []byte, idx []int, pixels int) {
	clear(y)
	for b, i := range idx {
		src := images[i*pixels : (i+1)*pixels]
		dst := x[b*pixels : (b+1)*pixels]
		for p, v := range src {
			dst[p] = float32(v) * (1.0 / 255)
		}
		y[b*10+int(labels[i])] = 1
	}
}

// evaluate runs the training graph forward over the test set (without a
// solver step, so the weights do not change) and returns the fraction of
// images whose largest logit is the label. The last, partial batch is padded
// with copies of the first test image and only its real images count.
func evaluate(vm G.VM, n *net, images, labels []byte, batch int) (float64, error) {
	const pixels = 28 * 28
	total := len(labels)
	idx := make([]int, batch)
	correct := 0
	for start := 0; start < total; start += batch {
		real := min(batch, total-start)
		for i := range idx {
			if i < real {
				idx[i] = start + i
			} else {
				idx[i] = 0
			}
		}
		fillBatch(n.xData, n.yData, images, labels, idx, pixels)
		if err := vm.RunAll(); err != nil {
			return 0, fmt.Errorf("evaluate: %w", err)
		}
		logits := n.logitsVal.Data().([]float32)
		for i := 0; i < real; i++ {
			row := logits[i*10 : (i+1)*10]
			best := 0
			for k, v := range row {
				if v > row[best] {
					best = k
				}
			}
			if best == int(labels[idx[i]]) {
				correct++
			}
		}
		vm.Reset()
	}
	return float64(correct) / float64(total), nil
}

// net is a built training graph: its input tensors' backing slices (written
// in place before each step), its learnable parameters, and the values read
// out of each run.
type net struct {
	g            *G.ExprGraph
	xData, yData []float32
	params       G.Nodes
	lossVal      G.Value
	logitsVal    G.Value
}

func (n *net) paramCount() int {
	total := 0
	for _, p := range n.params {
		total += p.Shape().TotalSize()
	}
	return total
}

// build constructs the model's training graph for a fixed batch size, with
// weights drawn as PyTorch's defaults draw them: uniform in ±1/√fan-in for
// weights and biases alike.
func build(model string, batch int, rng *rand.Rand) (*net, error) {
	g := G.NewGraph()
	n := &net{g: g}
	param := func(name string, fanIn int, shape ...int) *G.Node {
		size := 1
		for _, d := range shape {
			size *= d
		}
		bound := float32(1 / math.Sqrt(float64(fanIn)))
		data := make([]float32, size)
		for i := range data {
			data[i] = (2*rng.Float32() - 1) * bound
		}
		t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
		p := G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(t))
		n.params = append(n.params, p)
		return p
	}
	// dense computes x·w + b for x (batch, in), w (in, out), b (1, out).
	dense := func(x *G.Node, name string, in, out int) (*G.Node, error) {
		w := param(name+".weight", in, in, out)
		b := param(name+".bias", in, 1, out)
		xw, err := G.Mul(x, w)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return G.BroadcastAdd(xw, b, nil, []byte{0})
	}
	// conv computes a stride-1 convolution with bias, then ReLU.
	conv := func(x *G.Node, name string, in, out, k, pad int) (*G.Node, error) {
		w := param(name+".weight", in*k*k, out, in, k, k)
		b := param(name+".bias", in*k*k, 1, out, 1, 1)
		y, err := G.Conv2d(x, w, tensor.Shape{k, k}, []int{pad, pad}, []int{1, 1}, []int{1, 1})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if y, err = G.BroadcastAdd(y, b, nil, []byte{0, 2, 3}); err != nil {
			return nil, fmt.Errorf("%s bias: %w", name, err)
		}
		return G.Rectify(y)
	}

	var logits *G.Node
	var err error
	must := func(n *G.Node, e error) *G.Node {
		if err == nil && e != nil {
			err = e
		}
		return n
	}
	n.yData = make([]float32, batch*10)
	y := G.NewMatrix(g, tensor.Float32, G.WithShape(batch, 10), G.WithName("y"),
		G.WithValue(tensor.New(tensor.WithShape(batch, 10), tensor.WithBacking(n.yData))))
	n.xData = make([]float32, batch*28*28)
	switch model {
	case "lenet5":
		x := G.NewTensor(g, tensor.Float32, 4, G.WithShape(batch, 1, 28, 28), G.WithName("x"),
			G.WithValue(tensor.New(tensor.WithShape(batch, 1, 28, 28), tensor.WithBacking(n.xData))))
		h := must(conv(x, "c1", 1, 6, 5, 2)) // (B, 6, 28, 28)
		if err != nil {
			return nil, err
		}
		h = must(G.MaxPool2D(h, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2})) // (B, 6, 14, 14)
		h = must(conv(h, "c2", 6, 16, 5, 0))                                   // (B, 16, 10, 10)
		if err != nil {
			return nil, err
		}
		h = must(G.MaxPool2D(h, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2})) // (B, 16, 5, 5)
		h = must(G.Reshape(h, tensor.Shape{batch, 400}))
		if err != nil {
			return nil, err
		}
		h = must(G.Rectify(must(dense(h, "f1", 400, 120))))
		h = must(G.Rectify(must(dense(h, "f2", 120, 84))))
		logits = must(dense(h, "f3", 84, 10))
	case "mlp":
		x := G.NewMatrix(g, tensor.Float32, G.WithShape(batch, 784), G.WithName("x"),
			G.WithValue(tensor.New(tensor.WithShape(batch, 784), tensor.WithBacking(n.xData))))
		h := must(G.Rectify(must(dense(x, "l1", 784, 300))))
		h = must(G.Rectify(must(dense(h, "l2", 300, 100))))
		logits = must(dense(h, "l3", 100, 10))
	case "mlp800":
		x := G.NewMatrix(g, tensor.Float32, G.WithShape(batch, 784), G.WithName("x"),
			G.WithValue(tensor.New(tensor.WithShape(batch, 784), tensor.WithBacking(n.xData))))
		h := must(G.Rectify(must(dense(x, "l1", 784, 800))))
		logits = must(dense(h, "l2", 800, 10))
	default:
		return nil, fmt.Errorf("unknown model %q (want lenet5, mlp or mlp800)", model)
	}
	if err != nil {
		return nil, err
	}
	// loss = −Σ y·log softmax(logits) / batch
	logp := must(G.LogSoftMax(logits))
	sum := must(G.Sum(must(G.HadamardProd(logp, y))))
	loss := must(G.Div(must(G.Neg(sum)), G.NewConstant(float32(batch))))
	if err != nil {
		return nil, err
	}
	G.Read(loss, &n.lossVal)
	G.Read(logits, &n.logitsVal)
	if _, err := G.Grad(loss, n.params...); err != nil {
		return nil, fmt.Errorf("gradients: %w", err)
	}
	return n, nil
}

// loadMNIST reads prefix-images-idx3-ubyte.gz and prefix-labels-idx1-ubyte.gz
// from dir: n images of 28×28 bytes and n labels in 0..9.
func loadMNIST(dir, prefix string) (images, labels []byte, err error) {
	images, dims, err := readIDX(filepath.Join(dir, prefix+"-images-idx3-ubyte.gz"), 3)
	if err != nil {
		return nil, nil, err
	}
	if dims[1] != 28 || dims[2] != 28 {
		return nil, nil, fmt.Errorf("%s images are %d×%d, want 28×28", prefix, dims[1], dims[2])
	}
	labels, ldims, err := readIDX(filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz"), 1)
	if err != nil {
		return nil, nil, err
	}
	if ldims[0] != dims[0] {
		return nil, nil, fmt.Errorf("%s: %d images but %d labels", prefix, dims[0], ldims[0])
	}
	for i, l := range labels {
		if l > 9 {
			return nil, nil, fmt.Errorf("%s label %d is %d, want 0..9", prefix, i, l)
		}
	}
	return images, labels, nil
}

// readIDX reads a gzip-compressed IDX file of unsigned bytes with rank dims.
func readIDX(path string, rank int) ([]byte, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	data, dims, err := parseIDX(zr, rank)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, dims, nil
}

// parseIDX reads an uncompressed IDX stream of unsigned bytes with rank
// dimensions (each 1..2^20, 2^28 bytes at most in all) and returns its data
// and dimensions. Bytes after the data are not read.
func parseIDX(r io.Reader, rank int) ([]byte, []int, error) {
	head := make([]byte, 4+4*rank)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if want := uint32(0x0800 | rank); binary.BigEndian.Uint32(head) != want {
		return nil, nil, fmt.Errorf("bad magic 0x%08x, want 0x%08x", binary.BigEndian.Uint32(head), want)
	}
	dims := make([]int, rank)
	size := 1
	for i := range dims {
		d := binary.BigEndian.Uint32(head[4+4*i:])
		if d == 0 || d > 1<<20 {
			return nil, nil, fmt.Errorf("dimension %d is %d", i, d)
		}
		dims[i] = int(d)
		size *= int(d)
		if size > 1<<28 {
			return nil, nil, fmt.Errorf("more than %d bytes of data", 1<<28)
		}
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	return data, dims, nil
}
