package repro

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// The shrinkage encoder starts as ISTA's first step from zero, and gives
// exact zeros.
func TestPSDShrinkEncoderStartsAsISTA(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const n, m, rows, lambda = 12, 8, 5, 0.3
	d := randomDict(t, rng, n, m)
	x := make([]float32, rows*m)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	want := make([]float32, rows*n)
	d.ISTA(want, x, rows, lambda, 1, nil)
	e, err := newPSDEncoder(d, lambda, psdShrink)
	if err != nil {
		t.Fatal(err)
	}
	got := e.encode(x, rows)
	zeros := 0
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Fatalf("code %d: %v, ISTA's first step %v", i, got[i], want[i])
		}
		if got[i] == 0 {
			zeros++
		}
	}
	if zeros == 0 {
		t.Error("no exact zeros")
	}
}

// The tape's gradient of the prediction loss ‖F(x) − z‖² (mean) in the
// encoder's parameters matches central differences, for both forms.
func TestPSDEncoderGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	const n, m, rows = 6, 5, 4
	d := randomDict(t, rng, n, m)
	x, target := make([]float32, rows*m), make([]float32, rows*n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range target {
		target[i] = float32(rng.NormFloat64())
	}
	for _, form := range []psdForm{psdShrink, psdTanh} {
		e, err := newPSDEncoder(d, 0.2, form)
		if err != nil {
			t.Fatal(err)
		}
		for i := range e.params { // away from ISTA's start, so that the gradients of all parameters matter
			e.params[i] += float32(0.1 * rng.NormFloat64())
		}
		loss := func() float64 {
			var s float64
			for i, v := range e.encode(x, rows) {
				r := float64(v - target[i])
				s += r * r
			}
			return s / float64(rows*n)
		}
		tp := tensorcore.NewTape(nil)
		clear(e.grad)
		tp.Backward(tp.MSE(e.forward(tp, tp.Const(tensorcore.FromSlice(x, rows, m))), tp.Const(tensorcore.FromSlice(target, rows, n))))
		const h = 1e-3
		for i := range e.params {
			num := centralDifference(e.params, i, h, loss)
			if g := float64(e.grad[i]); math.Abs(g-num) > 1e-3+0.02*math.Abs(num) {
				t.Errorf("%v: parameter %d: gradient %v, central difference %v", form, i, g, num)
			}
		}
	}
}

// fistaPredicted's codes satisfy the optimality conditions of PSD's
// energy ½‖x − Dᵀz‖² + λ‖z‖₁ + ½α‖z − f‖²: with g its smooth part's
// gradient, g = −λ·sign(z) where z ≠ 0 and |g| ≤ λ where z = 0.
func TestFISTAPredictedOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	const n, m, rows = 10, 6, 3
	const lambda, alpha = 0.2, 0.7
	d := randomDict(t, rng, n, m)
	x, f := make([]float32, rows*m), make([]float32, rows*n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range f {
		f[i] = float32(0.5 * rng.NormFloat64())
	}
	z := make([]float32, rows*n)
	d.fistaPredicted(z, x, f, rows, lambda, alpha, 2000)
	c := make([]float32, rows*n)
	d.Correlate(c, x, rows)
	for r := range rows {
		for i := range n {
			g := float64(alpha*(z[r*n+i]-f[r*n+i]) - c[r*n+i])
			for j := range n {
				g += float64(d.Gram[i*n+j] * z[r*n+j])
			}
			zi := float64(z[r*n+i])
			if ok := (zi == 0 && math.Abs(g) <= lambda+1e-4) || (zi != 0 && math.Abs(g+lambda*math.Copysign(1, zi)) < 1e-4); !ok {
				t.Errorf("row %d code %d: z = %v, gradient %v", r, i, zi, g)
			}
		}
	}
}

// Points spread along three axes with standard deviations 3, 2 and 1:
// the covariance's spectrum is 9, 4, 1 (up to sampling).
func TestPCASpectrum(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const rows, d = 20000, 3
	x := make([]float32, rows*d)
	for i := range rows {
		x[i*d] = float32(5 + 3*rng.NormFloat64()) // an offset the centering removes
		x[i*d+1] = float32(2 * rng.NormFloat64())
		x[i*d+2] = float32(rng.NormFloat64())
	}
	eig, err := pcaSpectrum(x, rows, d)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{9, 4, 1} {
		if math.Abs(eig[i]-want)/want > 0.05 {
			t.Errorf("eigenvalue %d = %v, want %v", i, eig[i], want)
		}
	}
	if got := componentsFor([]float64{9, 4, 1}, 0.9); got != 2 {
		t.Errorf("components for 90%% of 9,4,1: %d, want 2", got)
	}
	if _, err := pcaSpectrum(x[:5], 1, 5); err == nil {
		t.Error("one row accepted")
	}
}

// Well separated blobs are found exactly.
func TestKMeansSeparatedBlobs(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const k, per, d = 4, 50, 2
	centers := [][2]float64{{0, 0}, {10, 0}, {0, 10}, {10, 10}}
	x := make([]float32, k*per*d)
	labels := make([]int, k*per)
	for c := range k {
		for i := range per {
			r := c*per + i
			x[r*d] = float32(centers[c][0] + 0.5*rng.NormFloat64())
			x[r*d+1] = float32(centers[c][1] + 0.5*rng.NormFloat64())
			labels[r] = c
		}
	}
	assign, _, err := kmeans(context.Background(), rng, x, k*per, d, k, 100)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := clusterAccuracy(assign, labels, k)
	if err != nil || acc != 1 {
		t.Errorf("accuracy %v, %v; want 1", acc, err)
	}
}

// Linearly separable classes are learned.
func TestLogisticAccuracySeparable(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	const n, d = 2000, 4
	x := make([]float32, n*d)
	y := make([]int, n)
	for i := range n {
		y[i] = i % 10
		for j := range d {
			x[i*d+j] = float32(rng.NormFloat64() * 0.1)
		}
		x[i*d+y[i]%d] += float32(1 + y[i]/d) // class c: a bump of height 1+c/4 on axis c%4
	}
	acc, err := logisticAccuracy(context.Background(), rng, x[:1500*d], y[:1500], x[1500*d:], y[1500:], d, 30, 1e-2)
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.95 {
		t.Errorf("accuracy %v on separable data", acc)
	}
}

func TestCopyAndAddingBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const batch, delay = 3, 7
	steps := delay + 2*copyLen
	in, out := make([]float32, steps*batch*copyAlphabet), make([]int, steps*batch)
	copyBatch(rng, in, out, batch, delay)
	for b := range batch {
		for tt := range steps {
			row := in[(tt*batch+b)*copyAlphabet : (tt*batch+b+1)*copyAlphabet]
			sym, ones := -1, 0
			for c, v := range row {
				if v == 1 {
					sym, ones = c, ones+1
				}
			}
			if ones != 1 {
				t.Fatalf("sequence %d step %d: %d ones", b, tt, ones)
			}
			switch {
			case tt < copyLen:
				if sym < 1 || sym > copySymbols || out[(tt+delay+copyLen)*batch+b] != sym {
					t.Errorf("sequence %d step %d: symbol %d, answer %d", b, tt, sym, out[(tt+delay+copyLen)*batch+b])
				}
			case tt == delay+copyLen-1:
				if sym != copyDelimiter {
					t.Errorf("sequence %d: step %d is %d, want the delimiter", b, tt, sym)
				}
			default:
				if sym != copyBlank {
					t.Errorf("sequence %d step %d: %d, want blank", b, tt, sym)
				}
			}
			if tt < delay+copyLen && out[tt*batch+b] != copyBlank {
				t.Errorf("sequence %d step %d: answer %d before the copy", b, tt, out[tt*batch+b])
			}
		}
	}
	ain, target := make([]float32, 20*batch*2), make([]float32, batch)
	addingBatch(rng, ain, target, batch, 20)
	for b := range batch {
		var sum float32
		marks := 0
		for tt := range 20 {
			if ain[(tt*batch+b)*2+1] == 1 {
				sum += ain[(tt*batch+b)*2]
				marks++
			}
		}
		if marks != 2 || sum != target[b] {
			t.Errorf("sequence %d: %d marks, sum %v, target %v", b, marks, sum, target[b])
		}
	}
}

func TestOrthogonalInit(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	const n = 16
	w := make([]float32, n*n)
	orthogonal(rng, w, n)
	for i := range n {
		for j := range n {
			var s float64
			for k := range n {
				s += float64(w[k*n+i]) * float64(w[k*n+j])
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(s-want) > 1e-5 {
				t.Fatalf("WᵀW[%d][%d] = %v", i, j, s)
			}
		}
	}
}
