package worker

import (
	"context"
	"encoding/binary"
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/job"
)

// FuzzUnpackState gives a rank's state unpacking what a ring's broadcast
// might carry: the source's state vector cut short, made longer, or with
// its last words (the position and the end of the optimizer state)
// replaced. It never panics: a vector of the wrong length, or a position
// outside the data set, is a clear error that changes nothing, and one it
// accepts leaves a valid position.
func FuzzUnpackState(f *testing.F) {
	spec := job.Default()
	spec.Model, spec.DataDir, spec.Epochs, spec.BatchSize, spec.Seed, spec.Threads = "mlp", realMNIST(f), 1, 32, 11, 1
	spec.TrainLimit, spec.TestLimit = 200, 100
	e, err := newEngine(context.Background(), spec, spec.BatchSize, f.Logf)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	valid := append([]float32(nil), e.packState()...)
	words := func(ws ...uint32) []byte {
		var b []byte
		for _, w := range ws {
			b = binary.LittleEndian.AppendUint32(b, w)
		}
		return b
	}
	f.Add(int32(0), []byte{})
	f.Add(int32(0), words(5, 0, 0, 64, 5, 0))
	f.Add(int32(-1), []byte{})
	f.Add(int32(-int32(len(valid))), []byte{})
	f.Add(int32(3), words(1, 2, 3))
	f.Add(int32(0), words(0, 0, 0xffffffff, 7, 0, 0x80000000))
	f.Add(int32(0), words(0, 0x80000000, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, delta int32, tail []byte) {
		buf := append([]float32(nil), valid...)
		switch {
		case delta < 0:
			buf = buf[:len(buf)-min(int(-int64(delta)), len(buf))]
		case delta > 0:
			buf = append(buf, make([]float32, min(int(delta), 1<<12))...)
		}
		for i := 0; i+4 <= len(tail) && i/4 < len(buf); i += 4 {
			buf[len(buf)-1-i/4] = math.Float32frombits(binary.LittleEndian.Uint32(tail[i:]))
		}
		before := append([]float32(nil), e.model.Arena.Data...)
		step, pos := e.step, e.pos
		err := e.unpackState(buf)
		if len(buf) != len(valid) && err == nil {
			t.Fatalf("a state of %d values, want %d, was accepted", len(buf), len(valid))
		}
		if err != nil {
			if e.step != step || e.pos != pos || !equalBits(e.model.Arena.Data, before) {
				t.Fatalf("a refused state (%v) changed the engine", err)
			}
			return
		}
		if e.step < 0 || e.pos.Epoch < 0 || e.pos.Consumed < 0 || e.pos.Consumed > e.train.Len() {
			t.Fatalf("accepted step %d at %v", e.step, e.pos)
		}
	})
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
