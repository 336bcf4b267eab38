package dataset

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

// writeMNIST writes a synthetic split into dir: n images whose pixel j of
// image i is (i+j) mod 256, labels i mod 10. gzipped chooses the file form.
func writeMNIST(t *testing.T, dir, split string, nImages, nLabels int, gzipped bool) {
	t.Helper()
	imgName, lblName, err := mnistFileNames(split)
	if err != nil {
		t.Fatal(err)
	}
	pix := make([]byte, nImages*784)
	for i := range nImages {
		for j := range 784 {
			pix[i*784+j] = byte(i + j)
		}
	}
	lbl := make([]byte, nLabels)
	for i := range lbl {
		lbl[i] = byte(i % 10)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{imgName, idxBytes(MagicImages, []uint32{uint32(nImages), 28, 28}, pix)},
		{lblName, idxBytes(MagicLabels, []uint32{uint32(nLabels)}, lbl)},
	} {
		name, data := f.name, f.data
		if gzipped {
			data = gz(t, data)
		} else {
			name = strings.TrimSuffix(name, ".gz")
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadMNISTSynthetic(t *testing.T) {
	for _, gzipped := range []bool{true, false} {
		dir := t.TempDir()
		writeMNIST(t, dir, "test", 5, 5, gzipped)
		m, err := LoadMNIST(dir, "test")
		if err != nil {
			t.Fatalf("gzipped=%v: %v", gzipped, err)
		}
		if m.N != 5 || m.Rows != 28 || m.Cols != 28 || len(m.Pixels) != 5*784 || len(m.Labels) != 5 {
			t.Fatalf("got N=%d %dx%d, %d pixels, %d labels", m.N, m.Rows, m.Cols, len(m.Pixels), len(m.Labels))
		}
		idx := []int{3, 0}
		x := make([]float32, 2*784)
		y := make([]int, 2)
		m.Batch(idx, x, y)
		if y[0] != 3 || y[1] != 0 {
			t.Fatalf("labels %v", y)
		}
		for b, i := range idx {
			for j := range 784 {
				p := float64(byte(i + j))
				want := float32((p/255 - 0.1307) / 0.3081)
				if x[b*784+j] != want {
					t.Fatalf("x[%d,0,%d] = %v, want %v", b, j, x[b*784+j], want)
				}
			}
		}
		allocs := testing.AllocsPerRun(10, func() { m.Batch(idx, x, y) })
		if allocs != 0 {
			t.Errorf("Batch allocates %.1f times", allocs)
		}
	}
}

func TestLoadMNISTErrors(t *testing.T) {
	dir := t.TempDir()
	writeMNIST(t, dir, "train", 4, 3, true)
	_, err := LoadMNIST(dir, "train")
	if err == nil || !strings.Contains(err.Error(), "holds 4 images but train-labels-idx1-ubyte.gz holds 3 labels") {
		t.Errorf("count mismatch: %v", err)
	}
	if _, err := LoadMNIST(dir, "valid"); err == nil || !strings.Contains(err.Error(), `unknown MNIST split "valid"`) {
		t.Errorf("bad split: %v", err)
	}
	if _, err := LoadMNIST(dir, "test"); err == nil || !strings.Contains(err.Error(), "t10k-images-idx3-ubyte.gz: no such file") {
		t.Errorf("missing files: %v", err)
	}
	// A labels file in place of the images names the file and the magic.
	lbl := filepath.Join(dir, "train-labels-idx1-ubyte.gz")
	img := filepath.Join(dir, "train-images-idx3-ubyte.gz")
	b, err := os.ReadFile(lbl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadMNIST(dir, "train")
	if err == nil || !strings.Contains(err.Error(), img) || !strings.Contains(err.Error(), "bad magic 0x00000801") {
		t.Errorf("swapped file: %v", err)
	}
}

func TestBatchPanicsOnBadLengths(t *testing.T) {
	m := &MNIST{N: 1, Rows: 28, Cols: 28, Pixels: make([]uint8, 784), Labels: []uint8{1}}
	for name, f := range map[string]func(){
		"short x": func() { m.Batch([]int{0}, make([]float32, 783), make([]int, 1)) },
		"short y": func() { m.Batch([]int{0}, make([]float32, 784), nil) },
		"index":   func() { m.Batch([]int{1}, make([]float32, 784), make([]int, 1)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// goModCache asks the go command where the module cache is, falling back to
// the environment.
func goModCache(t *testing.T) string {
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			return s
		}
	}
	return MNISTSourceFromEnv().ModCache
}

// TestRealMNIST puts the real MNIST files into a temporary directory with
// EnsureMNIST, from the module cache only (GOPROXY=off: never the network;
// the blank import of GoMNIST in gomnist_test.go makes `go test` fetch the
// module), and checks the splits and the golden normalized digits.
func TestRealMNIST(t *testing.T) {
	t.Setenv("GOMODCACHE", goModCache(t))
	t.Setenv("GOPROXY", "off")
	dir := t.TempDir()
	if err := EnsureMNIST(context.Background(), dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	if err := VerifyMNIST(dir); err != nil {
		t.Fatal(err)
	}
	test, err := LoadMNIST(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if test.N != 10000 || test.Labels[0] != 7 {
		t.Fatalf("test split: N=%d, first label %d; want 10000 and 7", test.N, test.Labels[0])
	}
	if !testing.Short() {
		train, err := LoadMNIST(dir, "train")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := TrainSamples("mnist", 0, 0); err != nil || train.N != n || n != MNISTTrainSize {
			t.Fatalf("train split: N=%d; TrainSamples says %d (%v), want 60000", train.N, n, err)
		}
		var hist [10]int
		for _, l := range train.Labels {
			hist[l]++
		}
		for d, k := range hist {
			if k < 5000 || k > 7000 {
				t.Errorf("train digit %d: %d samples", d, k)
			}
		}
	}

	// The first eight test digits, normalized, equal the golden input that
	// PyTorch computed in float64 (lenet5) and rounded to float32 (lenet5_f32).
	x := make([]float32, 8*784)
	y := make([]int, 8)
	test.Batch([]int{0, 1, 2, 3, 4, 5, 6, 7}, x, y)
	f32, err := safetensors.ReadFile("../testdata/lenet5_f32.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := f32.Tensor("input")
	want, err := in.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(x) {
		t.Fatalf("golden input has %d values, want %d", len(want), len(x))
	}
	for i := range x {
		if x[i] != want[i] {
			t.Fatalf("x[%d] = %v, golden %v", i, x[i], want[i])
		}
	}
	f64, err := safetensors.ReadFile("../testdata/lenet5.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	in64, _ := f64.Tensor("input")
	want64, err := in64.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if d := math.Abs(float64(x[i]) - want64[i]); d > 1e-6*math.Max(1, math.Abs(want64[i])) {
			t.Fatalf("x[%d] = %v, float64 golden %v", i, x[i], want64[i])
		}
	}
	lbl, _ := f64.Tensor("labels")
	labels, err := lbl.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	for i := range y {
		if float64(y[i]) != labels[i] {
			t.Fatalf("label %d = %d, golden %v", i, y[i], labels[i])
		}
	}
}

// TestRealMNISTViaProxy serves the real module zip, built from the module
// cache's files, on a loopback proxy and fetches the real files through it.
func TestRealMNISTViaProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("copies 11 MB")
	}
	cache := goModCache(t)
	src := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@"+MNISTModuleVersion, "data")
	files := map[string][]byte{}
	for _, name := range MNISTFileNames() {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("real MNIST not in the module cache: %v", err)
		}
		files[name] = b
	}
	srv, hits := proxyServer(t, moduleZip(t, files))
	dir := t.TempDir()
	if err := (MNISTSource{Proxy: srv.URL}).Ensure(context.Background(), dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests, want 1", hits.Load())
	}
	if err := VerifyMNIST(dir); err != nil {
		t.Fatal(err)
	}
}

func TestTrainSamples(t *testing.T) {
	for _, tc := range []struct {
		name           string
		holdout, limit int
		want           int
	}{
		{"mnist", 0, 0, 60000}, {"mnist", 0, 1000, 1000}, {"mnist", 0, 90000, 60000},
		{"mnist", 5000, 0, 55000}, {"mnist", 5000, 58000, 55000}, {"mnist", 5000, 1000, 1000},
		{"fashion-mnist", 0, 0, 60000}, {"fashion-mnist", 0, 500, 500},
		{"synthetic", 0, 0, SyntheticTrainSize},
	} {
		if got, err := TrainSamples(tc.name, tc.holdout, tc.limit); err != nil || got != tc.want {
			t.Errorf("TrainSamples(%s, %d, %d) = %d, %v; want %d", tc.name, tc.holdout, tc.limit, got, err, tc.want)
		}
	}
	if _, err := TrainSamples("imagenet", 0, 0); err == nil || !strings.Contains(err.Error(), `unknown data set "imagenet" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`) {
		t.Errorf("unknown data set: %v", err)
	}
	for _, h := range []int{60000, 70000, -1} {
		if _, err := TrainSamples("mnist", h, 0); err == nil || !strings.Contains(err.Error(), "cannot hold out") {
			t.Errorf("holding out %d of 60000: %v", h, err)
		}
	}
}
