package checkpoint

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

// testState is a small training state whose values are distinct per tensor
// and per seed, and include the values a lossy copy would spoil: -0, a
// subnormal, infinities and a NaN with a payload.
func testState(seed float32) State {
	n := 0
	vals := func(k int) []float32 {
		xs := make([]float32, k)
		for i := range xs {
			xs[i] = seed + float32(n)/8
			n++
		}
		return xs
	}
	st := State{
		Model: "mlp",
		Params: []Tensor{
			{Name: "fc1.weight", Shape: []int{3, 2}, Data: vals(6)},
			{Name: "fc1.bias", Shape: []int{3}, Data: vals(3)},
			{Name: "fc2.weight", Shape: []int{2, 3}, Data: vals(6)},
		},
		Buffers: []Tensor{
			{Name: "bn.running_mean", Shape: []int{2}, Data: vals(2)},
			{Name: "bn.num_batches_tracked", Shape: []int{}, Data: vals(1)},
		},
		OptimizerSteps: 1234,
		Optimizer: []Tensor{
			{Name: "exp_avg", Data: vals(15)},
			{Name: "exp_avg_sq", Data: vals(15)},
		},
		Codec: []Tensor{
			{Name: "error.0", Shape: []int{4}, Data: vals(4)},
			{Name: "q.0", Shape: []int{2, 2}, Data: vals(4)},
		},
	}
	p := st.Params[0].Data
	p[0] = float32(math.Copysign(0, -1))
	p[1] = math.Float32frombits(1) // the smallest subnormal
	p[2] = float32(math.Inf(1))
	p[3] = math.Float32frombits(0x7fc01234) // NaN with a payload
	st.Optimizer[1].Data[0] = float32(math.Inf(-1))
	return st
}

// zeroed is st with fresh, zero Data of the same names and shapes.
func zeroed(st State) State {
	z := func(ts []Tensor) []Tensor {
		out := make([]Tensor, len(ts))
		for i, t := range ts {
			out[i] = Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Data: make([]float32, len(t.Data))}
		}
		return out
	}
	return State{Model: st.Model, Params: z(st.Params), Buffers: z(st.Buffers), Optimizer: z(st.Optimizer), Codec: z(st.Codec)}
}

// checkBits fails unless got holds want's values bit for bit.
func checkBits(t *testing.T, what string, got, want []Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tensors, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || len(g.Data) != len(w.Data) {
			t.Fatalf("%s: tensor %d is %s of %d values, want %s of %d", what, i, g.Name, len(g.Data), w.Name, len(w.Data))
		}
		for j := range w.Data {
			if math.Float32bits(g.Data[j]) != math.Float32bits(w.Data[j]) {
				t.Errorf("%s: %s[%d] = %#x, want %#x", what, w.Name, j, math.Float32bits(g.Data[j]), math.Float32bits(w.Data[j]))
			}
		}
	}
}

// allZero reports whether no tensor of ts holds a set bit.
func allZero(ts ...[]Tensor) bool {
	for _, list := range ts {
		for _, t := range list {
			for _, v := range t.Data {
				if math.Float32bits(v) != 0 {
					return false
				}
			}
		}
	}
	return true
}

func TestStateRoundTripWorld1(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := testState(1)
	parts := st.Parts(0, 1)
	var names []string
	for _, p := range parts {
		names = append(names, p.Name)
	}
	if want := []string{"model.safetensors", "optimizer.safetensors", "codec-00001-of-00001.safetensors"}; !slices.Equal(names, want) {
		t.Fatalf("parts %v, want %v", names, want)
	}
	// Parts copies: changing st afterwards changes nothing written.
	st.Params[1].Data[0] = 99
	st = testState(1)
	if _, err := s.Save(Manifest{Step: 10, JobHash: "j", Model: "mlp", WorldSize: 1}, parts); err != nil {
		t.Fatal(err)
	}
	ck, err := s.Load(NameForStep(10))
	if err != nil {
		t.Fatal(err)
	}
	if md := ck.Files[ModelFile].Metadata; md["model"] != "mlp" || md["format"] != "pt" {
		t.Errorf("model metadata %v", md)
	}
	if md := ck.Files[OptimizerFile].Metadata; md["steps"] != "1234" {
		t.Errorf("optimizer metadata %v", md)
	}
	if tn, _ := ck.Files[OptimizerFile].Tensor("exp_avg"); !slices.Equal(tn.Shape, []int{15}) {
		t.Errorf("optimizer tensor shape %v, want [15]", tn.Shape)
	}

	dst := zeroed(st)
	steps, err := ck.ReadState(dst)
	if err != nil {
		t.Fatal(err)
	}
	if steps != 1234 {
		t.Errorf("steps = %d, want 1234", steps)
	}
	checkBits(t, "params", dst.Params, st.Params)
	checkBits(t, "buffers", dst.Buffers, st.Buffers)
	checkBits(t, "optimizer", dst.Optimizer, st.Optimizer)
	if !allZero(dst.Codec) {
		t.Error("ReadState wrote the codec state")
	}

	found, err := ck.ReadCodecState(0, 1, dst.Codec)
	if err != nil || !found {
		t.Fatalf("ReadCodecState(0, 1) = %v, %v", found, err)
	}
	checkBits(t, "codec", dst.Codec, st.Codec)

	// A ring of another size starts its codec afresh.
	other := zeroed(st)
	if found, err := ck.ReadCodecState(1, 3, other.Codec); found || err != nil {
		t.Fatalf("ReadCodecState(1, 3) on a world-1 checkpoint = %v, %v; want false, nil", found, err)
	}
	if !allZero(other.Codec) {
		t.Error("ReadCodecState wrote codec state it did not find")
	}
}

func TestStateRoundTripWorld3(t *testing.T) {
	e := newEtcdEnv(t)
	const world, step = 3, 40
	name := NameForStep(step)
	m := Manifest{Name: name, JobHash: "h", Model: "mlp", Step: step, WorldSize: world, Generation: 1}
	ranks := make([]State, world)
	for r := range world {
		// Every rank has the same model and optimizer (replicas) and a
		// codec state of its own.
		ranks[r] = testState(1)
		ranks[r].Codec = testState(float32(100 * (r + 1))).Codec
		for _, p := range ranks[r].Parts(r, world) {
			fi, err := e.store.WriteShard(name, p)
			if err != nil {
				t.Fatal(err)
			}
			m.Files = append(m.Files, fi)
		}
	}
	if len(m.Files) != 3*world {
		t.Fatalf("%d files, want %d", len(m.Files), 3*world)
	}
	sealed, err := e.store.Seal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.Commit(e.ctx, sealed, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	ck, err := e.c.LoadLatest(e.ctx, nil)
	if err != nil || ck == nil {
		t.Fatalf("LoadLatest = %v, %v", ck, err)
	}
	for _, f := range []string{"model-00002-of-00003.safetensors", "optimizer-00003-of-00003.safetensors", "codec-00001-of-00003.safetensors"} {
		if ck.Files[f] == nil {
			t.Errorf("checkpoint has no %s", f)
		}
	}

	want := ranks[0]
	dst := zeroed(want)
	steps, err := ck.ReadState(dst)
	if err != nil {
		t.Fatal(err)
	}
	if steps != want.OptimizerSteps {
		t.Errorf("steps = %d, want %d", steps, want.OptimizerSteps)
	}
	checkBits(t, "params", dst.Params, want.Params)
	checkBits(t, "buffers", dst.Buffers, want.Buffers)
	checkBits(t, "optimizer", dst.Optimizer, want.Optimizer)

	for r := range world {
		codec := zeroed(ranks[r]).Codec
		found, err := ck.ReadCodecState(r, world, codec)
		if err != nil || !found {
			t.Fatalf("rank %d: ReadCodecState = %v, %v", r, found, err)
		}
		checkBits(t, "codec", codec, ranks[r].Codec)
	}
	for _, w := range []int{1, 2, 4} {
		if found, err := ck.ReadCodecState(0, w, zeroed(want).Codec); found || err != nil {
			t.Errorf("ReadCodecState(0, %d) on a world-3 checkpoint = %v, %v; want false, nil", w, found, err)
		}
	}
}

// Each file's tensors are dealt round-robin in name order; every rank
// writes both files with the same metadata, and its own codec file.
func TestPartsDealsTensorsRoundRobin(t *testing.T) {
	st := testState(0)
	// Sorted model names: bn.num_batches_tracked, bn.running_mean,
	// fc1.bias, fc1.weight, fc2.weight.
	want := map[string][]string{
		"model-00001-of-00003.safetensors":     {"bn.num_batches_tracked", "fc1.weight"},
		"model-00002-of-00003.safetensors":     {"bn.running_mean", "fc2.weight"},
		"model-00003-of-00003.safetensors":     {"fc1.bias"},
		"optimizer-00001-of-00003.safetensors": {"exp_avg"},
		"optimizer-00002-of-00003.safetensors": {"exp_avg_sq"},
		"optimizer-00003-of-00003.safetensors": {},
		"codec-00001-of-00003.safetensors":     {"error.0", "q.0"},
		"codec-00002-of-00003.safetensors":     {"error.0", "q.0"},
		"codec-00003-of-00003.safetensors":     {"error.0", "q.0"},
	}
	got := map[string][]string{}
	var meta []map[string]string
	for r := range 3 {
		parts := st.Parts(r, 3)
		if len(parts) != 3 {
			t.Fatalf("rank %d: %d parts, want 3", r, len(parts))
		}
		for _, p := range parts {
			got[p.Name] = slices.Sorted(maps.Keys(p.Tensors))
		}
		meta = append(meta, parts[0].Metadata, parts[1].Metadata)
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || !slices.Equal(g, w) {
			t.Errorf("%s holds %v, want %v", name, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("parts %v", slices.Sorted(maps.Keys(got)))
	}
	for r := 1; r < 3; r++ {
		if !maps.Equal(meta[2*r], meta[0]) || !maps.Equal(meta[2*r+1], meta[1]) {
			t.Errorf("rank %d metadata %v %v, rank 0 %v %v", r, meta[2*r], meta[2*r+1], meta[0], meta[1])
		}
	}
	st.Codec = nil
	if parts := st.Parts(1, 3); len(parts) != 2 {
		t.Errorf("without codec state: %d parts, want 2", len(parts))
	}
}

// memCheckpoint encodes parts and parses them back, as Load would, without
// a store.
func memCheckpoint(t *testing.T, parts ...Part) *Checkpoint {
	t.Helper()
	ck := &Checkpoint{Manifest: Manifest{Name: NameForStep(7)}, Files: map[string]*safetensors.File{}}
	for _, p := range parts {
		var b bytes.Buffer
		if err := safetensors.Write(&b, p.Tensors, p.Metadata); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.ReadBytes(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ck.Files[p.Name] = f
	}
	return ck
}

// shards is the parts of every rank of a ring of world.
func shards(st State, world int) []Part {
	var parts []Part
	for r := range world {
		parts = append(parts, st.Parts(r, world)...)
	}
	return parts
}

func TestReadStateRefuses(t *testing.T) {
	st := testState(1)
	for _, tc := range []struct {
		name  string
		parts func() []Part
		dst   func(State) State
		want  []string // substrings of the error
	}{
		{"wrong shape", func() []Part { return st.Parts(0, 1) },
			func(d State) State { d.Params[2].Shape = []int{3, 2}; return d },
			[]string{"ckpt-000000000007", "model.safetensors", `"fc2.weight"`, "shape [2 3], want [3 2]"}},
		{"wrong shape, sharded", func() []Part { return shards(st, 2) },
			func(d State) State { d.Buffers[0].Shape = []int{1, 2}; return d },
			[]string{"ckpt-000000000007", "model-00002-of-00002.safetensors", `"bn.running_mean"`, "shape"}},
		{"short destination", func() []Part { return st.Parts(0, 1) },
			func(d State) State { d.Params[1].Data = d.Params[1].Data[:2]; return d },
			[]string{"model.safetensors", `"fc1.bias"`, "has 3 values"}},
		{"missing tensor", func() []Part { return st.Parts(0, 1) },
			func(d State) State {
				d.Params = append(d.Params, Tensor{Name: "fc3.weight", Shape: []int{1}, Data: make([]float32, 1)})
				return d
			},
			[]string{"ckpt-000000000007", "model.safetensors lacks", `"fc3.weight"`}},
		{"missing tensor, sharded", func() []Part { return shards(st, 3) },
			func(d State) State {
				d.Buffers = append(d.Buffers, Tensor{Name: "bn.running_var", Shape: []int{2}, Data: make([]float32, 2)})
				return d
			},
			[]string{"model-*.safetensors lacks", `"bn.running_var"`}},
		{"missing optimizer tensor", func() []Part { return st.Parts(0, 1) },
			func(d State) State {
				d.Optimizer = append(d.Optimizer, Tensor{Name: "momentum", Data: make([]float32, 15)})
				return d
			},
			[]string{"optimizer.safetensors lacks", `"momentum"`}},
		{"optimizer length", func() []Part { return st.Parts(0, 1) },
			func(d State) State { d.Optimizer[0].Data = make([]float32, 14); return d },
			[]string{"optimizer.safetensors", `"exp_avg"`, "shape [15], want [14]"}},
		{"extra optimizer tensor", func() []Part { return shards(st, 2) },
			func(d State) State { d.Optimizer = d.Optimizer[:1]; return d },
			[]string{"ckpt-000000000007", "optimizer-00002-of-00002.safetensors", `"exp_avg_sq"`, "not in the state"}},
		{"duplicated tensor", func() []Part {
			parts := shards(st, 2)
			// Rank 1's model shard also holds a tensor dealt to rank 0.
			parts[3].Tensors["fc2.weight"] = parts[0].Tensors["fc2.weight"]
			return parts
		}, func(d State) State { return d },
			[]string{"ckpt-000000000007", `"fc2.weight"`, "both model-00001-of-00002.safetensors and model-00002-of-00002.safetensors"}},
		{"duplicated across layouts", func() []Part {
			return append(st.Parts(0, 1)[:1], shards(st, 2)...)
		}, func(d State) State { return d },
			[]string{"both model"}},
		{"no optimizer file", func() []Part { return st.Parts(0, 1)[:1] },
			func(d State) State { return d },
			[]string{"ckpt-000000000007 has no optimizer.safetensors"}},
		{"no model file", func() []Part { return st.Parts(0, 1)[1:] },
			func(d State) State { return d },
			[]string{"has no model.safetensors"}},
		{"bad step count", func() []Part {
			parts := st.Parts(0, 1)
			parts[1].Metadata = map[string]string{"steps": "-3"}
			return parts
		}, func(d State) State { return d },
			[]string{"optimizer.safetensors: bad step count \"-3\""}},
		{"shards disagree on steps", func() []Part {
			parts := shards(st, 2)
			parts[4].Metadata = map[string]string{"steps": "1233"}
			return parts
		}, func(d State) State { return d },
			[]string{"optimizer-00001-of-00002.safetensors", `"1234"`, "optimizer-00002-of-00002.safetensors", `"1233"`}},
		{"not float", func() []Part {
			parts := st.Parts(0, 1)
			parts[0].Tensors["fc1.bias"] = safetensors.Tensor{DType: "I32", Shape: []int{3}, Data: make([]byte, 12)}
			return parts
		}, func(d State) State { return d },
			[]string{"model.safetensors", `"fc1.bias"`, "I32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := memCheckpoint(t, tc.parts()...)
			dst := tc.dst(zeroed(st))
			steps, err := ck.ReadState(dst)
			if err == nil {
				t.Fatalf("ReadState succeeded (steps %d)", steps)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !allZero(dst.Params, dst.Buffers, dst.Optimizer) {
				t.Error("ReadState changed dst before failing")
			}
		})
	}
	// The same checkpoints without the fault read.
	for _, parts := range [][]Part{st.Parts(0, 1), shards(st, 2), shards(st, 3), shards(st, 7)} {
		dst := zeroed(st)
		if _, err := memCheckpoint(t, parts...).ReadState(dst); err != nil {
			t.Fatal(err)
		}
		checkBits(t, "params", dst.Params, st.Params)
		checkBits(t, "optimizer", dst.Optimizer, st.Optimizer)
	}
}

func TestReadCodecState(t *testing.T) {
	st := testState(1)
	noCodec := st
	noCodec.Codec = nil
	for _, tc := range []struct {
		name        string
		parts       []Part
		rank, world int
		dst         func([]Tensor) []Tensor
		found       bool
		err         []string
	}{
		{name: "same world", parts: shards(st, 2), rank: 1, world: 2, found: true},
		{name: "another world", parts: shards(st, 2), rank: 1, world: 3},
		{name: "world 1 read by 2", parts: st.Parts(0, 1), rank: 0, world: 2},
		{name: "no codec files", parts: shards(noCodec, 2), rank: 0, world: 2},
		{name: "shape differs, length matches", parts: shards(st, 2), rank: 0, world: 2, found: true,
			dst: func(d []Tensor) []Tensor { d[1].Shape = []int{4}; return d }},
		{name: "rank's file missing", parts: shards(st, 2)[:5], rank: 1, world: 2,
			err: []string{"ckpt-000000000007", "codec files of 2 ranks", "codec-00002-of-00002.safetensors"}},
		{name: "length differs", parts: shards(st, 2), rank: 0, world: 2,
			dst: func(d []Tensor) []Tensor { d[0].Data = make([]float32, 5); return d },
			err: []string{"codec-00001-of-00002.safetensors", `"error.0"`, "has 4 values", "want 5"}},
		{name: "tensor missing", parts: shards(st, 2), rank: 0, world: 2,
			dst: func(d []Tensor) []Tensor { return append(d, Tensor{Name: "p.0", Data: make([]float32, 2)}) },
			err: []string{"codec-00001-of-00002.safetensors lacks", `"p.0"`}},
		{name: "extra tensor", parts: shards(st, 2), rank: 0, world: 2,
			dst: func(d []Tensor) []Tensor { return d[1:] },
			err: []string{"codec-00001-of-00002.safetensors", `"error.0"`, "not in the state"}},
		{name: "bad rank", parts: shards(st, 2), rank: 2, world: 2,
			err: []string{"rank 2 of a ring of 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := zeroed(st).Codec
			if tc.dst != nil {
				dst = tc.dst(dst)
			}
			found, err := memCheckpoint(t, tc.parts...).ReadCodecState(tc.rank, tc.world, dst)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("ReadCodecState = %v, nil; want an error", found)
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if found != tc.found {
				t.Fatalf("found = %v, want %v", found, tc.found)
			}
			if found {
				checkBits(t, "codec", dst, st.Codec)
			} else if !allZero(dst) {
				t.Error("ReadCodecState changed dst without reading")
			}
		})
	}
}
