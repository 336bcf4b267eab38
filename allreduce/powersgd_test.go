package allreduce

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestPowerSGDLowRank checks that a sum of rank-1 gradients sharing one
// direction is reconstructed (almost) exactly, bit-identically everywhere.
func TestPowerSGDLowRank(t *testing.T) {
	const n, rows, cols, r = 3, 12, 9, 2
	u := make([]float32, rows)
	v := make([]float32, cols)
	fillRank(u, 100, 1)
	fillRank(v, 101, 1)
	want := make([]float64, rows*cols)
	for k := 0; k < n; k++ {
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				want[i*cols+j] += float64(k+1) * float64(u[i]*v[j])
			}
		}
	}
	bufs := make([][]float32, n)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 5}), 0, func(ctx context.Context, c *Comm) error {
		s, err := NewPowerSGD(rows, cols, r, 42)
		if err != nil {
			return err
		}
		g := make([]float32, rows*cols)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				g[i*cols+j] = float32(c.Rank()+1) * u[i] * v[j]
			}
		}
		bufs[c.Rank()] = g
		return s.AllReduce(ctx, c, g)
	})
	for k, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", k, err)
		}
	}
	for k := 1; k < n; k++ {
		for i := range bufs[0] {
			if math.Float32bits(bufs[k][i]) != math.Float32bits(bufs[0][i]) {
				t.Fatalf("rank %d differs from rank 0 at %d", k, i)
			}
		}
	}
	for i, w := range want {
		if math.Abs(float64(bufs[0][i])-w) > 1e-4*(1+math.Abs(w)) {
			t.Fatalf("element %d = %v, want %v", i, bufs[0][i], w)
		}
	}
}

// TestPowerSGDErrorFeedback checks the invariant of error feedback: over
// any number of steps, what was delivered plus what is still held back
// equals the sum of all gradients.
func TestPowerSGDErrorFeedback(t *testing.T) {
	const n, rows, cols, r, steps = 4, 16, 10, 1, 5
	delivered := make([]float64, rows*cols)
	total := make([]float64, rows*cols)
	held := make([][]float32, n)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 7}), 0, func(ctx context.Context, c *Comm) error {
		s, err := NewPowerSGD(rows, cols, r, 7)
		if err != nil {
			return err
		}
		g := make([]float32, rows*cols)
		for step := 0; step < steps; step++ {
			fillRank(g, c.Rank(), uint64(step))
			if err := s.AllReduce(ctx, c, g); err != nil {
				return err
			}
			if c.Rank() == 0 {
				for i, v := range g {
					delivered[i] += float64(v)
				}
			}
		}
		held[c.Rank()] = s.m.e
		return nil
	})
	for k, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", k, err)
		}
	}
	g := make([]float32, rows*cols)
	for step := 0; step < steps; step++ {
		for k := 0; k < n; k++ {
			fillRank(g, k, uint64(step))
			for i, v := range g {
				total[i] += float64(v)
			}
		}
	}
	for i := range total {
		got := delivered[i]
		for k := 0; k < n; k++ {
			got += float64(held[k][i])
		}
		if math.Abs(got-total[i]) > 1e-3*(1+math.Abs(total[i])) {
			t.Fatalf("element %d: delivered+held = %v, sum of gradients = %v", i, got, total[i])
		}
	}
}

func TestPowerSGDArgs(t *testing.T) {
	for _, a := range [][3]int{{0, 3, 1}, {3, 3, 0}, {3, 3, 4}} {
		if _, err := NewPowerSGD(a[0], a[1], a[2], 1); err == nil {
			t.Errorf("NewPowerSGD%v accepted", a)
		}
	}
	s, _ := NewPowerSGD(100, 50, 2, 1)
	if got, want := s.CompressionRatio(), 5000.0/300; math.Abs(got-want) > 1e-12 {
		t.Fatalf("ratio %v, want %v", got, want)
	}
	errs := runMemRing(t, 1, fixedCfg(Config{}), 0, func(ctx context.Context, c *Comm) error {
		if err := s.AllReduce(ctx, c, make([]float32, 3)); err == nil {
			return fmt.Errorf("wrong-sized buffer accepted")
		}
		return nil
	})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
}

// testParams is a small model: a conv and a linear layer (compressed at
// rank 2), their biases, a 1×5 matrix too small to compress, and a scalar.
func testParams() (params []ParamShape, arena int) {
	for _, p := range []struct {
		name  string
		shape []int
	}{
		{"conv.w", []int{8, 3, 3, 3}},
		{"conv.b", []int{8}},
		{"bn.scale", []int{1, 5}},
		{"fc.w", []int{10, 40}},
		{"fc.b", []int{10}},
		{"temp", nil},
	} {
		size := 1
		for _, d := range p.shape {
			size *= d
		}
		params = append(params, ParamShape{Name: p.name, Shape: p.shape, Off: arena})
		arena += size
	}
	return params, arena
}

func testBuckets(t *testing.T, params []ParamShape, arena int) []Bucket {
	t.Helper()
	sizes := make([]int, len(params))
	for i, p := range params {
		end := arena
		if i+1 < len(params) {
			end = params[i+1].Off
		}
		sizes[i] = end - p.Off
	}
	// temp, fc.b, fc.w | bn.scale, conv.b, conv.w: each bucket mixes kinds.
	bs, err := PlanBuckets(sizes, BucketLimits{First: 4 * 400, Cap: 4 * 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) < 2 {
		t.Fatalf("%d buckets, want several", len(bs))
	}
	return bs
}

// reduceSteps runs steps of reducer p over every bucket, with rank's
// gradients from fill, and returns the arena after each step.
func reduceSteps(ctx context.Context, c *Comm, p *PowerSGDReducer, buckets []Bucket, arena, from, to int,
	fill func(rank, step int, g []float32)) ([][]float32, error) {
	var out [][]float32
	for step := from; step < to; step++ {
		g := make([]float32, arena)
		fill(c.Rank(), step, g)
		for _, b := range buckets {
			if err := p.Reduce(ctx, c, g, b); err != nil {
				return nil, err
			}
		}
		out = append(out, g)
	}
	return out, nil
}

func randomGrads(rank, step int, g []float32) { fillRank(g, rank, uint64(1000+step)) }

func checkRing(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func sameBits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestPowerSGDReducerExact checks that every rank ends each step with the
// same bits, and that the parameters PowerSGD does not compress are the
// plain ring sum of their elements.
func TestPowerSGDReducerExact(t *testing.T) {
	const n, steps = 3, 3
	params, arena := testParams()
	buckets := testBuckets(t, params, arena)
	outs := make([][][]float32, n)
	errs := runMemRing(t, n, fixedCfg(Config{Codec: BF16{}, Chunk: 16}), 0, func(ctx context.Context, c *Comm) error {
		p, err := NewPowerSGDReducer(params, 2, 11)
		if err != nil {
			return err
		}
		got, err := reduceSteps(ctx, c, p, buckets, arena, 0, steps, randomGrads)
		if err != nil {
			return err
		}
		outs[c.Rank()] = got
		// The plain ring sum of each bucket's uncompressed elements,
		// packed in the bucket's order.
		g := make([]float32, arena)
		for step := range steps {
			randomGrads(c.Rank(), step, g)
			for _, b := range buckets {
				var packed, want []float32
				for _, i := range b.Params {
					if p.mats[i] == nil {
						pr := params[i]
						packed = append(packed, g[pr.Off:pr.Off+p.sizes[i]]...)
						want = append(want, got[step][pr.Off:pr.Off+p.sizes[i]]...)
					}
				}
				if err := c.AllReduceExact(ctx, packed); err != nil {
					return err
				}
				if i := sameBits(packed, want); i >= 0 {
					return fmt.Errorf("step %d: uncompressed element %d = %v, ring sum %v", step, i, want[i], packed[i])
				}
			}
		}
		return nil
	})
	checkRing(t, errs)
	for r := 1; r < n; r++ {
		for step := range steps {
			if i := sameBits(outs[r][step], outs[0][step]); i >= 0 {
				t.Fatalf("step %d: rank %d element %d = %v, rank 0 has %v", step, r, i, outs[r][step][i], outs[0][step][i])
			}
		}
	}
	var names []string
	p, _ := NewPowerSGDReducer(params, 2, 11)
	for _, st := range p.State() {
		names = append(names, st.Name)
	}
	want := []string{"conv.w.powersgd_error", "conv.w.powersgd_q", "fc.w.powersgd_error", "fc.w.powersgd_q"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("state %v, want %v", names, want)
	}
}

// TestPowerSGDReducerLowRank checks that a gradient of rank 2, the same on
// every rank, comes back as the sum over ranks at ranks 2 and 4.
func TestPowerSGDReducerLowRank(t *testing.T) {
	const n = 4
	params, arena := testParams()
	buckets := testBuckets(t, params, arena)
	fill := func(rank, step int, g []float32) {
		fillRank(g, 0, 77) // every rank alike
		for _, pr := range params {
			if len(pr.Shape) < 2 || pr.Shape[0] < 2 {
				continue
			}
			rows := pr.Shape[0]
			cols := 1
			for _, d := range pr.Shape[1:] {
				cols *= d
			}
			u := make([]float32, 2*rows)
			v := make([]float32, 2*cols)
			fillRank(u, 1, 78)
			fillRank(v, 2, 79)
			for i := range rows {
				for j := range cols {
					g[pr.Off+i*cols+j] = u[i]*v[j] + u[rows+i]*v[cols+j]
				}
			}
		}
	}
	want := make([]float32, arena)
	fill(0, 0, want)
	for _, rank := range []int{2, 4} {
		outs := make([][]float32, n)
		errs := runMemRing(t, n, fixedCfg(Config{Chunk: 64}), 0, func(ctx context.Context, c *Comm) error {
			p, err := NewPowerSGDReducer(params, rank, 3)
			if err != nil {
				return err
			}
			got, err := reduceSteps(ctx, c, p, buckets, arena, 0, 1, fill)
			if err != nil {
				return err
			}
			outs[c.Rank()] = got[0]
			return nil
		})
		checkRing(t, errs)
		for i, w := range want {
			w *= n
			if got := outs[0][i]; math.Abs(float64(got-w)) > 1e-4*(1+math.Abs(float64(w))) {
				t.Fatalf("rank %d: element %d = %v, want %v", rank, i, got, w)
			}
		}
	}
}

// TestPowerSGDReducerErrorFeedback checks that over several steps, what was
// applied plus what the ranks hold back equals the sum of all gradients.
func TestPowerSGDReducerErrorFeedback(t *testing.T) {
	const n, steps = 4, 5
	params, arena := testParams()
	buckets := testBuckets(t, params, arena)
	applied := make([]float64, arena)
	held := make([][]NamedFloats, n)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 32}), 0, func(ctx context.Context, c *Comm) error {
		p, err := NewPowerSGDReducer(params, 1, 5)
		if err != nil {
			return err
		}
		got, err := reduceSteps(ctx, c, p, buckets, arena, 0, steps, randomGrads)
		if err != nil {
			return err
		}
		if c.Rank() == 0 {
			for _, g := range got {
				for i, v := range g {
					applied[i] += float64(v)
				}
			}
		}
		held[c.Rank()] = p.State()
		return nil
	})
	checkRing(t, errs)
	for _, st := range held {
		for _, nf := range st {
			name, ok := strings.CutSuffix(nf.Name, ".powersgd_error")
			if !ok {
				continue
			}
			for _, pr := range params {
				if pr.Name == name {
					for i, v := range nf.Data {
						applied[pr.Off+i] += float64(v)
					}
				}
			}
		}
	}
	g := make([]float32, arena)
	total := make([]float64, arena)
	for step := range steps {
		for r := range n {
			randomGrads(r, step, g)
			for i, v := range g {
				total[i] += float64(v)
			}
		}
	}
	for i := range total {
		if math.Abs(applied[i]-total[i]) > 1e-3*(1+math.Abs(total[i])) {
			t.Fatalf("element %d: applied+held = %v, sum of gradients = %v", i, applied[i], total[i])
		}
	}
}

// TestPowerSGDReducerState checks that a reducer restored from State after
// two steps gives the same third step, bit for bit, as one that ran on,
// and that Reset gives a fresh start.
func TestPowerSGDReducerState(t *testing.T) {
	const n = 2
	params, arena := testParams()
	buckets := testBuckets(t, params, arena)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 16}), 0, func(ctx context.Context, c *Comm) error {
		a, _ := NewPowerSGDReducer(params, 2, 9)
		want, err := reduceSteps(ctx, c, a, buckets, arena, 0, 3, randomGrads)
		if err != nil {
			return err
		}
		b, _ := NewPowerSGDReducer(params, 2, 9)
		if _, err := reduceSteps(ctx, c, b, buckets, arena, 0, 2, randomGrads); err != nil {
			return err
		}
		var saved []NamedFloats
		for _, st := range b.State() {
			saved = append(saved, NamedFloats{st.Name, slices.Clone(st.Data)})
		}
		slices.Reverse(saved) // any order
		restored, _ := NewPowerSGDReducer(params, 2, 9)
		if err := restored.LoadState(saved); err != nil {
			return err
		}
		got, err := reduceSteps(ctx, c, restored, buckets, arena, 2, 3, randomGrads)
		if err != nil {
			return err
		}
		if i := sameBits(got[0], want[2]); i >= 0 {
			return fmt.Errorf("restored reducer: element %d = %v, uninterrupted %v", i, got[0][i], want[2][i])
		}
		restored.Reset()
		got, err = reduceSteps(ctx, c, restored, buckets, arena, 0, 1, randomGrads)
		if err != nil {
			return err
		}
		if i := sameBits(got[0], want[0]); i >= 0 {
			return fmt.Errorf("reset reducer: element %d = %v, fresh %v", i, got[0][i], want[0][i])
		}
		return nil
	})
	checkRing(t, errs)
}

func TestPowerSGDReducerLoadStateErrors(t *testing.T) {
	params, _ := testParams()
	p, err := NewPowerSGDReducer(params, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	good := func() []NamedFloats {
		var st []NamedFloats
		for _, s := range p.State() {
			d := make([]float32, len(s.Data))
			for i := range d {
				d[i] = 7
			}
			st = append(st, NamedFloats{s.Name, d})
		}
		return st
	}
	before := fmt.Sprint(p.State())
	for name, edit := range map[string]func([]NamedFloats) []NamedFloats{
		"unknown":   func(st []NamedFloats) []NamedFloats { st[3].Name = "fc.b.powersgd_q"; return st },
		"short":     func(st []NamedFloats) []NamedFloats { st[1].Data = st[1].Data[1:]; return st },
		"missing":   func(st []NamedFloats) []NamedFloats { return st[:3] },
		"twice":     func(st []NamedFloats) []NamedFloats { return append(st, st[0]) },
		"duplicate": func(st []NamedFloats) []NamedFloats { st[2] = st[0]; return st },
	} {
		if err := p.LoadState(edit(good())); err == nil {
			t.Errorf("%s: LoadState accepted", name)
		}
		if fmt.Sprint(p.State()) != before {
			t.Fatalf("%s: a failed LoadState changed the state", name)
		}
	}
	if err := p.LoadState(good()); err != nil {
		t.Fatal(err)
	}
	if p.State()[3].Data[0] != 7 {
		t.Fatal("LoadState copied nothing")
	}
}

func TestPowerSGDReducerArgs(t *testing.T) {
	params, arena := testParams()
	for _, rank := range []int{0, 65} {
		if _, err := NewPowerSGDReducer(params, rank, 1); err == nil {
			t.Errorf("rank %d accepted", rank)
		}
	}
	for name, edit := range map[string]func([]ParamShape){
		"empty name":   func(ps []ParamShape) { ps[1].Name = "" },
		"repeated":     func(ps []ParamShape) { ps[1].Name = ps[0].Name },
		"negative dim": func(ps []ParamShape) { ps[0].Shape = []int{8, -27} },
		"negative off": func(ps []ParamShape) { ps[0].Off = -1 },
		"overlap":      func(ps []ParamShape) { ps[2].Off-- },
	} {
		ps := slices.Clone(params)
		edit(ps)
		if _, err := NewPowerSGDReducer(ps, 2, 1); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	p, err := NewPowerSGDReducer(params, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st := p.State(); len(st) != 0 {
		t.Fatalf("rank 64 compresses %d tensors of this small model", len(st)/2)
	}
	p, _ = NewPowerSGDReducer(params, 2, 1)
	for name, b := range map[string]Bucket{
		"index":  {Params: []int{len(params)}},
		"twice":  {Params: []int{3, 3}},
		"arena":  {Params: []int{len(params) - 1}},
		"negidx": {Params: []int{-1}},
	} {
		// Errors come before any operation is submitted: no Comm needed.
		if err := p.Reduce(context.Background(), nil, make([]float32, arena-1), b); err == nil {
			t.Errorf("bucket %s: accepted", name)
		}
	}
	comp, full := p.BytesPerStep()
	// conv.w 8×27 and fc.w 10×40 at rank 2; the rest (8+5+10+1) exact.
	if wantC, wantF := 4*(2*(8+27)+2*(10+40)+8+5+10+1), 4*arena; comp != wantC || full != wantF {
		t.Fatalf("BytesPerStep = %d, %d; want %d, %d", comp, full, wantC, wantF)
	}
}

func TestCheckGradientCodec(t *testing.T) {
	for _, name := range []string{"fp32", "bf16", "fp16+s2", "bf16+zstd", "powersgd-r1", "powersgd-r4", "powersgd-r64"} {
		if err := CheckGradientCodec(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"", "powersgd-r0", "powersgd-r65", "powersgd-x", "powersgd-r", "powersgd-r04", "powersgd-r+4", "powersgd-r4+zstd", "bf8", "fp32+lz4"} {
		err := CheckGradientCodec(name)
		if err == nil || !strings.Contains(err.Error(), "powersgd-rN (1 ≤ N ≤ 64)") || !strings.Contains(err.Error(), "+zstd or +s2") {
			t.Errorf("%q: %v", name, err)
		}
	}
	for name, want := range map[string]int{"powersgd-r4": 4, "powersgd-r64": 64, "powersgd-r0": 0, "bf16": 0, "powersgd-r100": 0} {
		got, ok := PowerSGDRank(name)
		if got != want || ok != (want > 0) {
			t.Errorf("PowerSGDRank(%q) = %d, %v", name, got, ok)
		}
	}
}
