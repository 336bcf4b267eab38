package allreduce

import (
	"fmt"
	"math"
	"testing"
)

// TestSIMDMatchesReference checks the dispatching kernels (SIMD where the
// CPU has it) against the plain-Go references, for every length up to 100
// and with guard elements after the destination that must stay untouched.
func TestSIMDMatchesReference(t *testing.T) {
	r := newTestRand(11)
	const guard = 8
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)),
		math.MaxFloat32, math.SmallestNonzeroFloat32, math.Float32frombits(0x7f800001), math.Float32frombits(0xff800123), 3.3961776e38}
	for n := 0; n <= 100; n++ {
		src := make([]float32, n)
		for i := range src {
			if r.IntN(5) == 0 {
				src[i] = specials[r.IntN(len(specials))]
			} else {
				src[i] = math.Float32frombits(uint32(r.Uint64()))
			}
		}
		got := make([]uint16, n+guard)
		want := make([]uint16, n+guard)
		for i := n; i < n+guard; i++ {
			got[i], want[i] = 0xdead, 0xdead
		}
		encodeBF16(got[:n], src)
		encodeBF16Go(want[:n], src)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("encodeBF16 n=%d element %d (%#08x) = %#04x, want %#04x", n, i, math.Float32bits(src[i%max(n, 1)]), got[i], want[i])
			}
		}
		got16 := make([]uint16, n+guard)
		want16 := make([]uint16, n+guard)
		for i := n; i < n+guard; i++ {
			got16[i], want16[i] = 0xbeef, 0xbeef
		}
		encodeF16(got16[:n], src)
		encodeF16Go(want16[:n], src)
		for i := range got16 {
			if got16[i] != want16[i] {
				t.Fatalf("encodeF16 n=%d element %d (%#08x) = %#04x, want %#04x", n, i, math.Float32bits(src[i%max(n, 1)]), got16[i], want16[i])
			}
		}
		table := NewFP16().table
		for _, add := range []bool{false, true} {
			g := make([]float32, n+guard)
			w := make([]float32, n+guard)
			for i := range g {
				g[i] = float32(i)
				w[i] = float32(i)
			}
			decodeF16(g[:n], want16[:n], table, add)
			decodeF16Go(w[:n], want16[:n], table, add)
			for i := range g {
				if math.Float32bits(g[i]) != math.Float32bits(w[i]) && !(math.IsNaN(float64(g[i])) && math.IsNaN(float64(w[i]))) {
					t.Fatalf("decodeF16 add=%v n=%d element %d = %v, want %v", add, n, i, g[i], w[i])
				}
			}
		}
		base := make([]float32, n+guard)
		for i := range base {
			base[i] = float32(r.NormFloat64())
		}
		for _, add := range []bool{false, true} {
			g := append([]float32(nil), base...)
			w := append([]float32(nil), base...)
			if add {
				decodeAddBF16(g[:n], want[:n])
				decodeAddBF16Go(w[:n], want[:n])
			} else {
				decodeBF16(g[:n], want[:n])
				decodeBF16Go(w[:n], want[:n])
			}
			for i := range g {
				if math.Float32bits(g[i]) != math.Float32bits(w[i]) && !(math.IsNaN(float64(g[i])) && math.IsNaN(float64(w[i]))) {
					t.Fatalf("decodeBF16 add=%v n=%d element %d = %v, want %v", add, n, i, g[i], w[i])
				}
			}
		}
		// The fused receive kernels. The sums include overflow to
		// infinity and infinity plus NaN; base holds no NaN, so no lane
		// adds two NaNs (whose payload x86 picks by operand order).
		for i := range base {
			if r.IntN(6) == 0 {
				base[i] = []float32{float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, -3.3961776e38, 0}[r.IntN(5)]
			}
		}
		// fused runs a fused receive kernel and its reference on copies of
		// base, with guards after the payload they write.
		fused := func(name string, kernel, ref func(dst []float32, out []uint16)) {
			g, w := append([]float32(nil), base...), append([]float32(nil), base...)
			gOut, wOut := make([]uint16, n+guard), make([]uint16, n+guard)
			for i := n; i < n+guard; i++ {
				gOut[i], wOut[i] = 0xdead, 0xdead
			}
			kernel(g[:n], gOut[:n])
			ref(w[:n], wOut[:n])
			for i := range g {
				if math.Float32bits(g[i]) != math.Float32bits(w[i]) || gOut[i] != wOut[i] {
					t.Fatalf("%s n=%d element %d = %v, %#04x, want %v, %#04x", name, n, i, g[i], gOut[i], w[i], wOut[i])
				}
			}
		}
		for _, round := range []bool{false, true} {
			fused(fmt.Sprintf("decodeAddEncodeBF16 round=%v", round),
				func(d []float32, o []uint16) { decodeAddEncodeBF16(d, want[:n], o, round) },
				func(d []float32, o []uint16) { decodeAddEncodeBF16Go(d, want[:n], o, round) })
		}
		fused("decodeCopyBF16",
			func(d []float32, o []uint16) { decodeCopyBF16(d, want[:n], o) },
			func(d []float32, o []uint16) { decodeCopyBF16Go(d, want[:n], o) })
		// Rounding in place, on values with specials, guards after.
		guarded := func() []float32 {
			x := make([]float32, n+guard)
			copy(x, src)
			for i := n; i < len(x); i++ {
				x[i] = 1.2345
			}
			return x
		}
		gb, wb, gf, wf := guarded(), guarded(), guarded(), guarded()
		quantizeBF16(gb[:n])
		quantizeBF16Go(wb[:n])
		quantizeF16(gf[:n], table)
		quantizeF16Go(wf[:n], table)
		for i := range gb {
			if math.Float32bits(gb[i]) != math.Float32bits(wb[i]) {
				t.Fatalf("quantizeBF16 n=%d element %d = %#08x, want %#08x", n, i, math.Float32bits(gb[i]), math.Float32bits(wb[i]))
			}
			if math.Float32bits(gf[i]) != math.Float32bits(wf[i]) && !(math.IsNaN(float64(gf[i])) && math.IsNaN(float64(wf[i]))) {
				t.Fatalf("quantizeF16 n=%d element %d = %v, want %v", n, i, gf[i], wf[i])
			}
		}
		g := append([]float32(nil), base...)
		w := append([]float32(nil), base...)
		addTo(g[:n], src)
		addToGo(w[:n], src)
		for i := range g {
			if math.Float32bits(g[i]) != math.Float32bits(w[i]) && !(math.IsNaN(float64(g[i])) && math.IsNaN(float64(w[i]))) {
				t.Fatalf("addTo n=%d element %d = %v, want %v", n, i, g[i], w[i])
			}
		}
	}
}
