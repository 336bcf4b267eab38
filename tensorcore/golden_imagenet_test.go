package tensorcore_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
	tc "github.com/ringtrain/ringtrain/tensorcore"
)

// TestGoldenImageNetOps checks the ImageNet-size ops against PyTorch
// (testdata/imagenet_ops.safetensors, a copy of the project's golden file):
// output and input gradient of sum(out * grad_out).
func TestGoldenImageNetOps(t *testing.T) {
	f, err := safetensors.ReadFile(filepath.Join("testdata", "imagenet_ops.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var cases map[string]struct {
		LabelSmoothing float64 `json:"label_smoothing"`
	}
	if err := json.Unmarshal([]byte(f.Metadata["cases"]), &cases); err != nil {
		t.Fatalf("imagenet_ops.safetensors cases: %v", err)
	}
	for _, name := range []string{"adaptive_avg_pool2d_1", "ce_label_smoothing_0.1"} {
		t.Run(name, func(t *testing.T) {
			p, ok := cases[name]
			if !ok {
				t.Fatalf("no golden case %q", name)
			}
			tp := tc.NewTape(nil)
			x := goldenTensor(t, f, name+".in0")
			gx := tc.New(x.Shape...)
			v := tp.Param(x, gx)
			var out *tc.Var
			switch name {
			case "adaptive_avg_pool2d_1": // (N, C) here, (N, C, 1, 1) in PyTorch
				out = tp.GlobalAvgPool(v)
				if out.Value.Shape[0] != x.Shape[0] || out.Value.Shape[1] != x.Shape[1] || len(out.Value.Shape) != 2 {
					t.Fatalf("GlobalAvgPool of %v has shape %v", x.Shape, out.Value.Shape)
				}
				out = tp.Reshape(out, x.Shape[0], x.Shape[1], 1, 1)
			case "ce_label_smoothing_0.1":
				lab, _ := golden64(t, f, name+".labels")
				labels := make([]int, len(lab))
				for i, l := range lab {
					labels[i] = int(l)
				}
				if p.LabelSmoothing != 0.1 {
					t.Fatalf("label smoothing %v, want 0.1", p.LabelSmoothing)
				}
				out = tp.CrossEntropySmoothed(v, labels, float32(p.LabelSmoothing))
			}
			checkGolden(t, f, name+".out", out.Value)
			gout := goldenTensor(t, f, name+".grad_out")
			tp.Backward(tp.SumAll(tp.Mul(out, tp.Const(gout))))
			checkGolden(t, f, name+".grad_in0", gx)
		})
	}
}
