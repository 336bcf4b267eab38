package dataset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
)

// realMNISTTest puts the real MNIST files into a temporary directory from
// the module cache only (never the network; see TestRealMNIST) and loads
// the test split.
func realMNISTTest(t *testing.T) *MNIST {
	t.Helper()
	m, err := LoadMNIST(realMNISTDir(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFillMatchesBatch: on the real MNIST test split, Fill at the stored
// size writes exactly what Batch writes, in batches of uneven sizes and in
// shuffled order; Train, Seed and Epoch change nothing.
func TestFillMatchesBatch(t *testing.T) {
	m := realMNISTTest(t)
	order := NewSampler(m.N, 3, true)
	idx := make([]int, m.N)
	order.Next(idx)
	for _, tf := range []Transform{
		{Out: m.Shape()},
		{Out: Shape{1, 28, 28}, Train: true, Seed: 9, Epoch: 4},
	} {
		for lo, b := 0, 1; lo < m.N; lo, b = lo+b, b*2+1 {
			batch := idx[lo:min(m.N, lo+b)]
			want := make([]float32, len(batch)*784)
			wantY := make([]int, len(batch))
			m.Batch(batch, want, wantY)
			got := make([]float32, len(batch)*784)
			gotY := make([]int, len(batch))
			if err := m.Fill(got, gotY, batch, tf); err != nil {
				t.Fatal(err)
			}
			if i, ok := sameBits(got, want); !ok {
				t.Fatalf("%+v, batch at %d: x[%d] = %v, Batch gives %v", tf, lo, i, got[i], want[i])
			}
			if !slices.Equal(gotY, wantY) {
				t.Fatalf("%+v, batch at %d: labels %v, Batch gives %v", tf, lo, gotY, wantY)
			}
		}
	}
}

// TestFillResampledMatchesReference: resampled Fill equals the old
// resampler bit for bit, on real MNIST digits (16×16 is the 1990 ConvNet's
// input) and on the synthetic set, for square and oblong sizes down to 1×1.
func TestFillResampledMatchesReference(t *testing.T) {
	sets := []*MNIST{NewSynthetic(7, 300)}
	if !testing.Short() {
		sets = append(sets, realMNISTTest(t))
	}
	for _, d := range sets {
		idx := make([]int, min(d.N, 1000))
		for i := range idx {
			idx[i] = (i * 7919) % d.N
		}
		for _, hw := range [][2]int{{16, 16}, {14, 14}, {20, 20}, {27, 28}, {28, 16}, {13, 7}, {1, 1}, {28, 28}} {
			out := Shape{1, hw[0], hw[1]}
			ref, err := newRefInput([]int{1, hw[0], hw[1]}, d)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, len(idx)*out.Size())
			wantY := make([]int, len(idx))
			ref.batch(d, idx, want, wantY)
			got := make([]float32, len(idx)*out.Size())
			gotY := make([]int, len(idx))
			if err := d.Fill(got, gotY, idx, Transform{Out: out}); err != nil {
				t.Fatal(err)
			}
			if i, ok := sameBits(got, want); !ok {
				t.Fatalf("%s → %v: x[%d] = %v, the reference gives %v", d.Name(), out, i, got[i], want[i])
			}
			if !slices.Equal(gotY, wantY) {
				t.Fatalf("%s → %v: labels differ", d.Name(), out)
			}
		}
	}
}

// TestResampleKeepsTheMean: each output pixel is the mean of the area it
// covers, so a constant image stays constant and the mean of the image is
// kept (up to float32 rounding).
func TestResampleKeepsTheMean(t *testing.T) {
	d := NewSynthetic(3, 20)
	for _, hw := range [][2]int{{16, 16}, {7, 5}, {1, 1}} {
		out := Shape{1, hw[0], hw[1]}
		x := make([]float32, d.N*out.Size())
		if err := d.Fill(x, make([]int, d.N), seqIdx(d.N), Transform{Out: out}); err != nil {
			t.Fatal(err)
		}
		full := make([]float32, d.N*784)
		if err := d.Fill(full, make([]int, d.N), seqIdx(d.N), Transform{Out: d.Shape()}); err != nil {
			t.Fatal(err)
		}
		for i := range d.N {
			var a, b float64
			for _, v := range x[i*out.Size() : (i+1)*out.Size()] {
				a += float64(v)
			}
			for _, v := range full[i*784 : (i+1)*784] {
				b += float64(v)
			}
			a, b = a/float64(out.Size()), b/784
			if math.Abs(a-b) > 1e-4 {
				t.Fatalf("%v: image %d has mean %v, resampled %v", out, i, b, a)
			}
		}
	}
	one := &MNIST{N: 1, Rows: 28, Cols: 28, Pixels: slices.Repeat([]uint8{200}, 784), Labels: []uint8{0}}
	x := make([]float32, 16*16)
	if err := one.Fill(x, make([]int, 1), []int{0}, Transform{Out: Shape{1, 16, 16}}); err != nil {
		t.Fatal(err)
	}
	for i, v := range x {
		if math.Abs(float64(v-NormalizePixel(200))) > 1e-5 {
			t.Fatalf("constant image: x[%d] = %v, want %v", i, v, NormalizePixel(200))
		}
	}
}

func seqIdx(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func TestFillAllocatesNothing(t *testing.T) {
	d := NewSynthetic(1, 64)
	idx := seqIdx(64)
	y := make([]int, 64)
	for _, out := range []Shape{{1, 28, 28}, {1, 16, 16}} {
		x := make([]float32, 64*out.Size())
		tf := Transform{Out: out}
		if a := testing.AllocsPerRun(10, func() { d.Fill(x, y, idx, tf) }); a != 0 {
			t.Errorf("Fill to %v: %v allocations", out, a)
		}
	}
}

// TestFillConcurrent runs Fill from many goroutines on one set, each with
// its own buffers, at the stored size and resampled, through Head too, and
// compares with a sequential Fill (run it with -race).
func TestFillConcurrent(t *testing.T) {
	var d Set = NewSynthetic(5, 400)
	for _, s := range []Set{d, Head(d, 300)} {
		for _, out := range []Shape{{1, 28, 28}, {1, 16, 16}} {
			tf := Transform{Out: out, Train: true, Seed: 1}
			const workers, batch = 8, 25
			want := make([][]float32, workers)
			for w := range workers {
				want[w] = make([]float32, batch*out.Size())
				if err := s.Fill(want[w], make([]int, batch), workerIdx(w, batch, s.Len()), tf); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make([]error, workers)
			for w := range workers {
				wg.Go(func() {
					x, y := make([]float32, batch*out.Size()), make([]int, batch)
					for range 20 {
						if err := s.Fill(x, y, workerIdx(w, batch, s.Len()), tf); err != nil {
							errs[w] = err
							return
						}
						if i, ok := sameBits(x, want[w]); !ok {
							errs[w] = fmt.Errorf("worker %d: x[%d] = %v, want %v", w, i, x[i], want[w][i])
							return
						}
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("%s → %v: %v", s.Name(), out, err)
				}
			}
		}
	}
}

func workerIdx(w, batch, n int) []int {
	idx := make([]int, batch)
	for i := range idx {
		idx[i] = (w*batch + i*13) % n
	}
	return idx
}

func TestHead(t *testing.T) {
	var s Set = NewSynthetic(2, 50)
	for _, n := range []int{0, -1, 50, 51} {
		if h := Head(s, n); h != s {
			t.Errorf("Head(s, %d) is not s", n)
		}
	}
	h := Head(s, 10)
	if h.Len() != 10 || h.Name() != "synthetic" || h.Classes() != 10 || h.Shape() != (Shape{1, 28, 28}) {
		t.Fatalf("Head(s, 10): len %d, name %s, %d classes, shape %v", h.Len(), h.Name(), h.Classes(), h.Shape())
	}
	if hh := Head(h, 4); hh.Len() != 4 {
		t.Errorf("Head(Head(s, 10), 4) has %d samples", hh.Len())
	}
	if hh := Head(h, 20); hh != h {
		t.Errorf("Head(Head(s, 10), 20) is not Head(s, 10)")
	}
	tf := Transform{Out: Shape{1, 16, 16}}
	x, y := make([]float32, 2*256), make([]int, 2)
	if err := h.Fill(x, y, []int{9, 0}, tf); err != nil {
		t.Fatal(err)
	}
	wx, wy := make([]float32, 2*256), make([]int, 2)
	if err := s.Fill(wx, wy, []int{9, 0}, tf); err != nil {
		t.Fatal(err)
	}
	if _, ok := sameBits(x, wx); !ok || !slices.Equal(y, wy) {
		t.Error("Head's samples differ from the set's")
	}
	err := h.Fill(x, y, []int{3, 10}, tf)
	if err == nil || !strings.Contains(err.Error(), "index 10 (position 1 of 2) outside [0, 10)") {
		t.Errorf("index past the head: %v", err)
	}
}

func TestCheckTransform(t *testing.T) {
	s := NewSynthetic(1, 1)
	for _, ok := range []Shape{{1, 28, 28}, {1, 16, 16}, {1, 1, 1}, {1, 28, 5}} {
		if err := CheckTransform(s, ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, tc := range []struct {
		out  Shape
		want string
	}{
		{Shape{3, 28, 28}, "the model wants 3×28×28 input (3 channels); synthetic gives 1×28×28 images (1 channels)"},
		{Shape{1, 32, 32}, "the model wants 1×32×32 input; synthetic gives 1×28×28 images, which are resampled down, never up"},
		{Shape{1, 28, 29}, "the model wants 1×28×29 input"},
		{Shape{1, 0, 28}, "the model wants 1×0×28 input, which is empty; synthetic gives 1×28×28 images"},
		{Shape{}, "which is empty"},
		{Shape{-1, 2, 2}, "which is empty"},
	} {
		err := CheckTransform(s, tc.out)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dataset: ") {
			t.Errorf("%v: error %v, want one containing %q", tc.out, err, tc.want)
		}
	}
}

// TestFillErrors: bad arguments are errors, never panics, and nothing is
// written.
func TestFillErrors(t *testing.T) {
	var s Set = NewSynthetic(1, 10)
	for _, set := range []Set{s, Head(s, 5)} {
		n := set.Len()
		for _, tc := range []struct {
			name  string
			idx   []int
			nx    int
			ny    int
			out   Shape
			wants string
		}{
			{"negative index", []int{0, -1}, 2 * 784, 2, Shape{1, 28, 28}, "index -1 (position 1 of 2)"},
			{"index past the end", []int{n, 0}, 2 * 784, 2, Shape{1, 28, 28}, fmt.Sprintf("index %d (position 0 of 2) outside [0, %d)", n, n)},
			{"short x", []int{0, 1}, 2*784 - 1, 2, Shape{1, 28, 28}, "needs x of 1568 floats, got 1567"},
			{"short x resampled", []int{0, 1}, 2*256 - 1, 2, Shape{1, 16, 16}, "needs x of 512 floats, got 511"},
			{"short y", []int{0, 1}, 2 * 784, 1, Shape{1, 28, 28}, "needs y of 2 labels, got 1"},
			{"nil buffers", []int{0}, 0, 0, Shape{1, 28, 28}, "needs x of 784 floats, got 0"},
			{"channels", []int{0}, 3 * 784, 1, Shape{3, 28, 28}, "3 channels"},
			{"larger", []int{0}, 900, 1, Shape{1, 30, 30}, "never up"},
		} {
			x := slices.Repeat([]float32{-7}, tc.nx)
			y := slices.Repeat([]int{-7}, tc.ny)
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("%s: Fill panicked: %v", tc.name, p)
					}
				}()
				err = set.Fill(x, y, tc.idx, Transform{Out: tc.out})
			}()
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Errorf("%s (len %d): error %v, want one containing %q", tc.name, n, err, tc.wants)
			}
			if slices.ContainsFunc(x, func(v float32) bool { return v != -7 }) || slices.ContainsFunc(y, func(v int) bool { return v != -7 }) {
				t.Errorf("%s: Fill wrote into the buffers and failed", tc.name)
			}
		}
	}
	// Longer buffers are fine: only their prefixes are written.
	x, y := slices.Repeat([]float32{-7}, 784+3), slices.Repeat([]int{-7}, 2)
	if err := s.Fill(x, y, []int{1}, Transform{Out: Shape{1, 28, 28}}); err != nil {
		t.Fatal(err)
	}
	if x[784] != -7 || y[1] != -7 || y[0] != 1 {
		t.Errorf("Fill wrote past its samples: x[784] = %v, y = %v", x[784], y)
	}
	// No samples, no buffers: nothing to do.
	if err := s.Fill(nil, nil, nil, Transform{Out: Shape{1, 16, 16}}); err != nil {
		t.Errorf("empty Fill: %v", err)
	}
}

func TestNames(t *testing.T) {
	names := Names()
	if !slices.Equal(names, []string{"fashion-mnist", "mnist", "synthetic"}) {
		t.Fatalf("Names() = %v", names)
	}
	names[0] = "changed"
	if Names()[0] != "fashion-mnist" {
		t.Fatal("Names returns the package's own slice")
	}
	for _, n := range Names() {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v", n, err)
		}
	}
	err := CheckName("mnsit")
	if want := `dataset: unknown data set "mnsit" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`; err == nil || err.Error() != want {
		t.Errorf("CheckName(mnsit) = %v, want %s", err, want)
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "mnsit", "", "train", nil); err == nil || !strings.Contains(err.Error(), `unknown data set "mnsit"`) {
		t.Errorf("unknown name: %v", err)
	}
	for _, name := range Names() {
		// A bad split fails before any file is looked for.
		if _, err := Open(ctx, name, "/nonexistent", "valid", nil); err == nil || !strings.Contains(err.Error(), `unknown split "valid"`) {
			t.Errorf("%s: bad split: %v", name, err)
		}
	}
	for split, n := range map[string]int{"train": SyntheticTrainSize, "test": SyntheticTestSize} {
		s, err := Open(ctx, "synthetic", "", split, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Name() != "synthetic" || s.Len() != n || s.Classes() != 10 || s.Shape() != (Shape{1, 28, 28}) {
			t.Errorf("synthetic %s: %s, %d samples, %d classes, %v", split, s.Name(), s.Len(), s.Classes(), s.Shape())
		}
	}

	// Real MNIST from the module cache (never the network).
	t.Setenv("GOMODCACHE", goModCache(t))
	t.Setenv("GOPROXY", "off")
	dir := t.TempDir()
	var log []string
	s, err := Open(ctx, "mnist", dir, "test", logTo(t, &log))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "mnist" || s.Len() != 10000 || s.Shape() != (Shape{1, 28, 28}) {
		t.Fatalf("mnist test: %s, %d samples, %v", s.Name(), s.Len(), s.Shape())
	}
	if err := VerifyMNIST(dir); err != nil {
		t.Fatal(err)
	}
	if len(log) == 0 {
		t.Error("Open logged nothing while putting MNIST in place")
	}
}

func TestSynthetic(t *testing.T) {
	a, b := NewSynthetic(SyntheticTrainSeed, SyntheticTrainSize), NewSynthetic(SyntheticTrainSeed, SyntheticTrainSize)
	if !slices.Equal(a.Pixels, b.Pixels) || !slices.Equal(a.Labels, b.Labels) {
		t.Fatal("the same seed gives different images")
	}
	// The bytes are pinned: rendering is integer arithmetic, the same on
	// every platform, and a change to it changes what tests train on.
	sum := sha256.Sum256(a.Pixels)
	if got, want := hex.EncodeToString(sum[:]), "4604fbcdfe553416a8a24c1e575e32ebcfa6a713614f36091f23d89f1049c20c"; got != want {
		t.Errorf("synthetic training images: SHA-256 %s, want %s", got, want)
	}
	if short := NewSynthetic(SyntheticTrainSeed, 10); !slices.Equal(short.Pixels, a.Pixels[:10*784]) {
		t.Error("image i depends on n")
	}
	test := NewSynthetic(SyntheticTestSeed, SyntheticTestSize)
	if slices.Equal(test.Pixels, a.Pixels[:len(test.Pixels)]) {
		t.Fatal("train and test splits are the same images")
	}
	var hist [10]int
	for _, l := range a.Labels {
		hist[l]++
	}
	for k, c := range hist {
		if c != SyntheticTrainSize/10 {
			t.Errorf("class %d: %d samples", k, c)
		}
	}
	// Learnable: even a nearest-centroid classifier on the training
	// split's class means gets most of the test split right.
	var cent [10][784]float64
	for i := range a.N {
		for j := range 784 {
			cent[a.Labels[i]][j] += float64(a.Pixels[i*784+j]) / float64(hist[a.Labels[i]])
		}
	}
	correct := 0
	for i := range test.N {
		best, bestD := -1, math.Inf(1)
		for k := range cent {
			var d float64
			for j := range 784 {
				e := float64(test.Pixels[i*784+j]) - cent[k][j]
				d += e * e
			}
			if d < bestD {
				best, bestD = k, d
			}
		}
		if best == int(test.Labels[i]) {
			correct++
		}
	}
	if acc := float64(correct) / float64(test.N); acc < 0.8 {
		t.Errorf("nearest-centroid test accuracy %.2f, want ≥ 0.8", acc)
	}
	// Normalized with the training pixels' own mean and std.
	var sum1, sum2 float64
	x := make([]float32, a.N*784)
	if err := a.Fill(x, make([]int, a.N), seqIdx(a.N), Transform{Out: a.Shape()}); err != nil {
		t.Fatal(err)
	}
	for _, v := range x {
		sum1 += float64(v)
		sum2 += float64(v) * float64(v)
	}
	mean := sum1 / float64(len(x))
	std := math.Sqrt(sum2/float64(len(x)) - mean*mean)
	if math.Abs(mean) > 2e-3 || math.Abs(std-1) > 2e-3 {
		t.Errorf("normalized synthetic pixels: mean %.4f, std %.4f; want 0 and 1", mean, std)
	}
}

func TestHoldout(t *testing.T) {
	var s Set = NewSynthetic(3, 50)
	rest, held, err := Holdout(s, 8)
	if err != nil {
		t.Fatal(err)
	}
	if rest.Len() != 42 || held.Len() != 8 || held.Name() != "synthetic" || held.Classes() != 10 {
		t.Fatalf("Holdout(s, 8): %d and %d samples, %s, %d classes", rest.Len(), held.Len(), held.Name(), held.Classes())
	}
	tf := Transform{Out: Shape{1, 28, 28}}
	fill := func(set Set, idx ...int) ([]float32, []int) {
		t.Helper()
		x, y := make([]float32, len(idx)*784), make([]int, len(idx))
		if err := set.Fill(x, y, idx, tf); err != nil {
			t.Fatal(err)
		}
		return x, y
	}
	// The held samples are the set's last, in order; the rest its first.
	for _, c := range []struct {
		set      Set
		idx, src []int
	}{
		{held, []int{0, 7, 3}, []int{42, 49, 45}},
		{rest, []int{41, 0}, []int{41, 0}},
		{Span(held, 2, 6), []int{0, 3}, []int{44, 47}}, // a span of a span
		{Head(held, 2), []int{1}, []int{43}},
	} {
		x, y := fill(c.set, c.idx...)
		wx, wy := fill(s, c.src...)
		if _, ok := sameBits(x, wx); !ok || !slices.Equal(y, wy) {
			t.Errorf("samples %v of a %d-sample part differ from the set's %v", c.idx, c.set.Len(), c.src)
		}
	}
	if err := held.Fill(make([]float32, 784), make([]int, 1), []int{8}, tf); err == nil || !strings.Contains(err.Error(), "index 8 (position 0 of 1) outside [0, 8)") {
		t.Errorf("index past the held-out part: %v", err)
	}
	for _, n := range []int{0, -2, 50, 60} {
		if _, _, err := Holdout(s, n); err == nil || !strings.Contains(err.Error(), "cannot hold out") {
			t.Errorf("Holdout(s, %d): %v", n, err)
		}
	}
	if sp := Span(s, -5, 99); sp != s {
		t.Error("a span covering the set is not the set")
	}
	if sp := Span(s, 30, 10); sp.Len() != 0 {
		t.Errorf("an inverted span has %d samples", sp.Len())
	}
}
