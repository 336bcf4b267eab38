package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
)

func idx(rank int, dims []uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(0x0800|rank))
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, data...)
}

func TestParseIDX(t *testing.T) {
	data, dims, err := parseIDX(bytes.NewReader(idx(3, []uint32{2, 1, 3}, []byte{1, 2, 3, 4, 5, 6, 7})), 3)
	if err != nil || !slices.Equal(dims, []int{2, 1, 3}) || !slices.Equal(data, []byte{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("parseIDX = %v, %v, %v", data, dims, err)
	}
	bad := map[string][]byte{
		"short header": idx(1, nil, nil),
		"wrong rank":   idx(3, []uint32{1, 1, 1}, []byte{0}),
		"zero dim":     idx(1, []uint32{0}, nil),
		"huge":         idx(3, []uint32{1 << 20, 1 << 20, 1 << 20}, nil),
		"short data":   idx(1, []uint32{4}, []byte{1, 2}),
	}
	for name, b := range bad {
		if _, _, err := parseIDX(bytes.NewReader(b), 1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParseIDX(f *testing.F) {
	f.Add(idx(1, []uint32{3}, []byte{0, 1, 9}), 1)
	f.Add(idx(3, []uint32{1, 28, 28}, make([]byte, 784)), 3)
	f.Add([]byte{0, 0, 8, 3, 255, 255, 255, 255}, 3)
	f.Fuzz(func(t *testing.T, b []byte, rank int) {
		rank = 1 + (rank&3)%3
		data, dims, err := parseIDX(bytes.NewReader(b), rank)
		if err != nil {
			return
		}
		size := 1
		for _, d := range dims {
			size *= d
		}
		if len(dims) != rank || len(data) != size || !bytes.Equal(data, b[4+4*rank:4+4*rank+size]) {
			t.Fatalf("dims %v, %d bytes from %d input bytes", dims, len(data), len(b))
		}
	})
}

// TestTrainSteps builds each network at batch 8 and checks that a few
// steps on one fixed batch lower its loss.
func TestTrainSteps(t *testing.T) {
	for _, model := range []string{"lenet5", "mlp", "mlp800"} {
		t.Run(model, func(t *testing.T) {
			const batch = 8
			rng := rand.New(rand.NewPCG(1, 2))
			n, err := build(model, batch, rng)
			if err != nil {
				t.Fatal(err)
			}
			vm := G.NewTapeMachine(n.g, G.BindDualValues(n.params...))
			defer vm.Close()
			solver := G.NewMomentum(G.WithLearnRate(0.03), G.WithMomentum(0.9))
			for i := range n.xData {
				n.xData[i] = rng.Float32()
			}
			for b := 0; b < batch; b++ {
				n.yData[b*10+b%10] = 1
			}
			var first, last float32
			for s := 0; s < 10; s++ {
				if err := vm.RunAll(); err != nil {
					t.Fatal(err)
				}
				last = n.lossVal.Data().(float32)
				if s == 0 {
					first = last
				}
				if err := solver.Step(G.NodesToValueGrads(n.params)); err != nil {
					t.Fatal(err)
				}
				vm.Reset()
			}
			if math.IsNaN(float64(last)) || last >= first {
				t.Fatalf("loss %v after 10 steps, %v at the first", last, first)
			}
		})
	}
}
