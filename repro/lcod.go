package repro

import (
	"math"
	"sync"
)

// lcod is Learned Coordinate Descent: CoD with its three matrices, the
// filter We (N, M), the mutual inhibition S (N, N) and the thresholds θ
// (N), free parameters trained to regress the optimal codes, unrolled for
// Steps steps. It computes in float64; the parameters live in one flat
// slice (We, then S, then θ) with a gradient of the same layout.
type lcod struct {
	n, m, steps int
	params      []float64
	grad        []float64

	// per-call scratch
	b, held   []float64
	ks        []int
	ds, bks   []float64
	z, target []float64
	gb, gheld []float64
}

func newLCoD(d *Dict, lambda float32, steps int) *lcod {
	n, m := d.N, d.M
	l := &lcod{n: n, m: m, steps: steps}
	l.params = make([]float64, n*m+n*n+n)
	we, s, th := l.split(l.params)
	for i, v := range d.Atoms {
		we[i] = float64(v)
	}
	for i, v := range d.Gram {
		s[i] = -float64(v)
	}
	for i := range n {
		s[i*n+i]++
		th[i] = float64(lambda)
	}
	l.alloc()
	return l
}

// alloc gives l its own gradient and scratch.
func (l *lcod) alloc() {
	n, steps := l.n, l.steps
	l.grad = make([]float64, len(l.params))
	l.b, l.held = make([]float64, n), make([]float64, n)
	l.ks, l.ds, l.bks = make([]int, steps), make([]float64, steps), make([]float64, steps)
	l.z, l.target = make([]float64, n), make([]float64, n)
	l.gb, l.gheld = make([]float64, n), make([]float64, n)
}

// worker returns a net that shares l's parameters and has its own
// gradient and scratch, to compute part of a batch's gradient
// concurrently with others.
func (l *lcod) worker() *lcod {
	w := &lcod{n: l.n, m: l.m, steps: l.steps, params: l.params}
	w.alloc()
	return w
}

// split returns the views We, S and θ of a parameter-shaped slice.
func (l *lcod) split(p []float64) (we, s, theta []float64) {
	nm, nn := l.n*l.m, l.n*l.n
	return p[:nm], p[nm : nm+nn], p[nm+nn:]
}

// forward writes the code of x into z (N values) and keeps what backward
// needs.
func (l *lcod) forward(z []float64, x []float32) {
	n, m := l.n, l.m
	we, s, th := l.split(l.params)
	for i := range n {
		var acc float64
		row := we[i*m : (i+1)*m]
		for j, v := range x {
			acc += row[j] * float64(v)
		}
		l.b[i] = acc
		l.held[i] = 0
	}
	for t := range l.steps {
		k, best := 0, -1.0
		for j := range n {
			if dz := math.Abs(shrink(l.b[j], th[j]) - l.held[j]); dz > best {
				k, best = j, dz
			}
		}
		bk := l.b[k]
		zk := shrink(bk, th[k])
		d := zk - l.held[k]
		l.ks[t], l.ds[t], l.bks[t] = k, d, bk
		if d != 0 {
			for j := range n {
				l.b[j] += s[j*n+k] * d
			}
		}
		l.held[k] = zk
	}
	for j := range n {
		z[j] = shrink(l.b[j], th[j])
	}
}

// backward adds to l.grad the gradient of ½·w·‖z − target‖² through the
// last forward (z its output, x its input), the choice of coordinates held
// fixed.
func (l *lcod) backward(x []float32, z, target []float64, w float64) {
	n, m := l.n, l.m
	gb, gheld := l.gb, l.gheld
	_, s, th := l.split(l.params)
	gwe, gs, gth := l.split(l.grad)
	// z = h_θ(B) at the end; l.b holds that B.
	for j := range n {
		g := w * (z[j] - target[j])
		gb[j], gheld[j] = 0, 0
		if bj := l.b[j]; bj > th[j] {
			gb[j] = g
			gth[j] -= g
		} else if bj < -th[j] {
			gb[j] = g
			gth[j] += g
		}
	}
	for t := l.steps - 1; t >= 0; t-- {
		k, d, bk := l.ks[t], l.ds[t], l.bks[t]
		// Forward: d = h(bk) − held_k; B += S[:,k]·d; held_k = h(bk).
		var gd float64
		for j := range n {
			gs[j*n+k] += gb[j] * d
			gd += s[j*n+k] * gb[j]
		}
		gh := gheld[k] + gd
		gheld[k] = -gd
		if bk > th[k] {
			gb[k] += gh
			gth[k] -= gh
		} else if bk < -th[k] {
			gb[k] += gh
			gth[k] += gh
		}
	}
	for i := range n {
		if g := gb[i]; g != 0 {
			row := gwe[i*m : (i+1)*m]
			for j, v := range x {
				row[j] += g * float64(v)
			}
		}
	}
}

// lcodShards is how many parts a batch's gradient is split into. The parts
// are computed concurrently and summed in order, so that the result does
// not depend on the number of cores.
const lcodShards = 4

// batchGradient sets l.grad to the gradient of the weighted squared error
// ½·Σ w[r]²·‖z_r − z*_r‖²/len(rows) over the given rows of set, computed in
// one part per worker of ws (see worker), lcodShards of them in training.
func (l *lcod) batchGradient(ws []*lcod, set codeSet, rows []int, w []float32) {
	scale := 1 / float64(len(rows))
	var wg sync.WaitGroup
	for s, lw := range ws {
		part := rows[s*len(rows)/len(ws) : (s+1)*len(rows)/len(ws)]
		wg.Go(func() {
			clear(lw.grad)
			n, m := lw.n, lw.m
			for _, r := range part {
				x := set.x[r*m : (r+1)*m]
				for j := range n {
					lw.target[j] = float64(set.zStar[r*n+j])
				}
				lw.forward(lw.z, x)
				lw.backward(x, lw.z, lw.target, float64(w[r])*float64(w[r])*scale)
			}
		})
	}
	wg.Wait()
	copy(l.grad, ws[0].grad)
	for _, lw := range ws[1:] {
		for i, g := range lw.grad {
			l.grad[i] += g
		}
	}
}

// adam64 is Adam over float64 parameters, for the hand-differentiated
// learners.
type adam64 struct {
	m, v []float64
	t    int
}

func (a *adam64) step(p, g []float64, lr float64) {
	if a.m == nil {
		a.m, a.v = make([]float64, len(p)), make([]float64, len(p))
	}
	a.t++
	const b1, b2, eps = 0.9, 0.999, 1e-8
	c1, c2 := 1-math.Pow(b1, float64(a.t)), 1-math.Pow(b2, float64(a.t))
	for i, gi := range g {
		a.m[i] = b1*a.m[i] + (1-b1)*gi
		a.v[i] = b2*a.v[i] + (1-b2)*gi*gi
		p[i] -= lr * (a.m[i] / c1) / (math.Sqrt(a.v[i]/c2) + eps)
	}
}
