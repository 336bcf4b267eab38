package tensorcore_test

import (
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
	tc "github.com/ringtrain/ringtrain/tensorcore"
)

// goldenTol is the norm-wise relative tolerance of float32 results against
// PyTorch's float64 ones.
const goldenTol = 1e-4

func readGolden(t *testing.T, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// goldenTensor loads a tensor as float32, failing the test when it is absent.
func goldenTensor(t *testing.T, f *safetensors.File, name string) *tc.Tensor {
	t.Helper()
	st, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("golden tensor %q missing", name)
	}
	d, err := st.Float32s()
	if err != nil {
		t.Fatalf("golden tensor %q: %v", name, err)
	}
	shape := st.Shape
	if len(shape) == 0 {
		shape = []int{1}
	}
	return tc.FromSlice(d, shape...)
}

func golden64(t *testing.T, f *safetensors.File, name string) ([]float64, []int) {
	t.Helper()
	st, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("golden tensor %q missing", name)
	}
	d, err := st.Float64s()
	if err != nil {
		t.Fatalf("golden tensor %q: %v", name, err)
	}
	return d, st.Shape
}

// relErr returns ||got - want|| / ||want|| (or the absolute norm when want
// is all zero).
func relErr(got []float32, want []float64) float64 {
	var d, n float64
	for i, w := range want {
		e := float64(got[i]) - w
		d += e * e
		n += w * w
	}
	if n == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / n)
}

func checkGolden(t *testing.T, f *safetensors.File, name string, got *tc.Tensor) {
	t.Helper()
	want, shape := golden64(t, f, name)
	if len(shape) == 0 {
		shape = []int{1}
	}
	if !slices.Equal(got.Shape, shape) {
		t.Errorf("%s: shape %v, want %v", name, got.Shape, shape)
		return
	}
	if e := relErr(got.Data, want); e > goldenTol || math.IsNaN(e) {
		t.Errorf("%s: relative error %.3g above %g", name, e, goldenTol)
	}
}

type caseParams struct {
	Stride, Padding, Dilation, Groups, Kernel, Dim int
	OutputPadding                                  int     `json:"output_padding"`
	Slope, Eps                                     float64 // leaky slope, batchnorm eps
}

func TestGoldenOps(t *testing.T) {
	f := readGolden(t, "ops.safetensors")
	var cases map[string]caseParams
	if err := json.Unmarshal([]byte(f.Metadata["cases"]), &cases); err != nil {
		t.Fatalf("ops.safetensors cases: %v", err)
	}
	if len(cases) != 24 {
		t.Fatalf("%d golden cases, want 24", len(cases))
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			tp := tc.NewTape(nil)
			var ins []*tc.Tensor
			var grads []*tc.Tensor
			var vs []*tc.Var
			for k := 0; ; k++ {
				in := name + ".in" + string(rune('0'+k))
				if _, ok := f.Tensor(in); !ok {
					break
				}
				x := goldenTensor(t, f, in)
				g := tc.New(x.Shape...)
				ins, grads = append(ins, x), append(grads, g)
				vs = append(vs, tp.Param(x, g))
			}
			conv := tc.ConvParams{StrideH: p.Stride, StrideW: p.Stride, PadH: p.Padding, PadW: p.Padding,
				DilH: p.Dilation, DilW: p.Dilation, Groups: p.Groups}
			bias := func() *tc.Var {
				if len(vs) > 2 {
					return vs[2]
				}
				return nil
			}
			stride := p.Stride
			if stride == 0 {
				stride = p.Kernel
			}
			var out *tc.Var
			switch {
			case name == "linear":
				out = tp.Linear(vs[0], vs[1], vs[2])
			case name == "matmul_batched":
				out = tp.MatMul(vs[0], vs[1], false, false)
			case strings.HasPrefix(name, "conv2d_"):
				out = tp.Conv2D(vs[0], vs[1], bias(), conv)
			case name == "conv_transpose2d_s2":
				out = tp.ConvTranspose2D(vs[0], vs[1], bias(), conv, p.OutputPadding, p.OutputPadding)
			case strings.HasPrefix(name, "maxpool2d"):
				out = tp.MaxPool2D(vs[0], p.Kernel, stride, p.Padding)
			case strings.HasPrefix(name, "avgpool2d"):
				out = tp.AvgPool2D(vs[0], p.Kernel, stride, p.Padding)
			case name == "relu":
				out = tp.ReLU(vs[0])
			case strings.HasPrefix(name, "leaky_relu"):
				out = tp.LeakyReLU(vs[0], float32(p.Slope))
			case name == "tanh":
				out = tp.Tanh(vs[0])
			case name == "sigmoid":
				out = tp.Sigmoid(vs[0])
			case name == "softplus":
				out = tp.Softplus(vs[0])
			case name == "softmax":
				out = tp.Softmax(vs[0], p.Dim)
			case name == "log_softmax":
				out = tp.LogSoftmax(vs[0], p.Dim)
			case name == "cross_entropy":
				lab, _ := golden64(t, f, "cross_entropy.labels")
				labels := make([]int, len(lab))
				for i, v := range lab {
					labels[i] = int(v)
				}
				out = tp.CrossEntropy(vs[0], labels)
			case name == "mse":
				out = tp.MSE(vs[0], vs[1])
			case name == "bce_logits":
				out = tp.BCEWithLogits(vs[0], vs[1])
			case name == "batchnorm2d_train":
				out = tp.BatchNorm(vs[0], vs[1], vs[2], nil, nil, 0.1, float32(p.Eps), true)
			case name == "broadcast_add":
				out = tp.Add(vs[0], vs[1])
			case name == "sum_dim1":
				out = tp.Sum(vs[0], []int{p.Dim}, false)
			default:
				t.Fatalf("no builder for golden case %q", name)
			}
			checkGolden(t, f, name+".out", out.Value)
			gout := goldenTensor(t, f, name+".grad_out")
			tp.Backward(tp.SumAll(tp.Mul(out, tp.Const(gout))))
			for k := range ins {
				checkGolden(t, f, name+".grad_in"+string(rune('0'+k)), grads[k])
			}
		})
	}
}

// lenet5 holds LeNet-5's parameters and gradients in PyTorch's layout.
type lenet5 struct {
	names       []string
	param, grad map[string]*tc.Tensor
}

var lenetShapes = []struct {
	name  string
	shape []int
}{
	{"c1.weight", []int{6, 1, 5, 5}}, {"c1.bias", []int{6}},
	{"c2.weight", []int{16, 6, 5, 5}}, {"c2.bias", []int{16}},
	{"f1.weight", []int{120, 400}}, {"f1.bias", []int{120}},
	{"f2.weight", []int{84, 120}}, {"f2.bias", []int{84}},
	{"f3.weight", []int{10, 84}}, {"f3.bias", []int{10}},
}

// forward records LeNet-5 (ReLU, max-pool) on x (N, 1, 28, 28) and returns
// the logits and the mean cross-entropy loss.
func (m *lenet5) forward(tp *tc.Tape, x *tc.Tensor, labels []int) (logits, loss *tc.Var) {
	p := func(n string) *tc.Var { return tp.Param(m.param[n], m.grad[n]) }
	h := tp.Const(x)
	h = tp.MaxPool2D(tp.ReLU(tp.Conv2D(h, p("c1.weight"), p("c1.bias"), tc.ConvParams{PadH: 2, PadW: 2})), 2, 2, 0)
	h = tp.MaxPool2D(tp.ReLU(tp.Conv2D(h, p("c2.weight"), p("c2.bias"), tc.ConvParams{})), 2, 2, 0)
	h = tp.Reshape(h, x.Shape[0], -1)
	h = tp.ReLU(tp.Linear(h, p("f1.weight"), p("f1.bias")))
	h = tp.ReLU(tp.Linear(h, p("f2.weight"), p("f2.bias")))
	logits = tp.Linear(h, p("f3.weight"), p("f3.bias"))
	return logits, tp.CrossEntropy(logits, labels)
}

func TestGoldenLeNet5(t *testing.T) {
	f := readGolden(t, "lenet5.safetensors")
	m := &lenet5{param: map[string]*tc.Tensor{}, grad: map[string]*tc.Tensor{}}
	for _, s := range lenetShapes {
		m.param[s.name] = goldenTensor(t, f, "param."+s.name)
		m.grad[s.name] = tc.New(s.shape...)
		if !slices.Equal(m.param[s.name].Shape, s.shape) {
			t.Fatalf("param.%s: shape %v, want %v", s.name, m.param[s.name].Shape, s.shape)
		}
	}
	x := goldenTensor(t, f, "input")
	lab, _ := golden64(t, f, "labels")
	labels := make([]int, len(lab))
	for i, v := range lab {
		labels[i] = int(v)
	}
	for _, workers := range []int{1, 2} {
		pool := tc.NewPool(workers)
		tp := tc.NewTape(pool)
		for step := 0; step < 2; step++ { // the second step runs on reused buffers
			for _, g := range m.grad {
				clear(g.Data)
			}
			tp.Reset()
			logits, loss := m.forward(tp, x, labels)
			tp.Backward(loss)
			checkGolden(t, f, "logits", logits.Value)
			checkGolden(t, f, "loss", loss.Value)
			for _, s := range lenetShapes {
				checkGolden(t, f, "grad."+s.name, m.grad[s.name])
			}
		}
		pool.Close()
	}
}
