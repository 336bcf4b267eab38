package tensorcore

// The optimizer's update loops: the elementwise passes over every parameter
// that follow each training step. They are memory-bound over parameters
// that no longer fit a core's cache, so they run as vector kernels of the
// kernel set (plain-Go references beside them, one shared suite).

// SGDArgs are the factors of one step of SGD with momentum, with PyTorch's
// semantics (torch.optim.SGD): with d = g + WeightDecay·p,
//
//	no momentum buffer:  p -= LR·d
//	first step:          b = d
//	later steps:         b = Momentum·b + (1−Dampening)·d
//	then:                p -= LR·(d + Momentum·b)   (Nesterov)
//	                     p -= LR·b                  (otherwise)
type SGDArgs struct {
	LR, WeightDecay, Momentum, Dampening float32
	Nesterov                             bool
	// First marks the step that starts the momentum buffer (b = d).
	First bool
}

// SGDStep applies one SGD step to the parameters p with gradients g and
// momentum buffer buf (nil: no momentum), element by element; len(g) and
// len(buf) (when not nil) must be len(p). The kernels fuse the multiply and
// add of each line above, so results may differ from the plain-Go
// reference (SGDStepRef) in the last bit; a given kernel set is
// deterministic.
//
// Each element's result is the same however p, g and buf are cut into
// slices, so an optimizer may split its step across goroutines or
// parameter groups freely.
func SGDStep(p, g, buf []float32, a SGDArgs) {
	g = g[:len(p)]
	if buf != nil {
		buf = buf[:len(p)]
	}
	kern.sgd(p, g, buf, a)
}

// SGDStepRef is SGDStep's plain-Go reference.
func SGDStepRef(p, g, buf []float32, a SGDArgs) {
	g = g[:len(p)]
	lr, wd, mom := a.LR, a.WeightDecay, a.Momentum
	switch {
	case buf == nil:
		for i := range p {
			d := g[i] + wd*p[i]
			p[i] -= lr * d
		}
	case a.First:
		buf = buf[:len(p)]
		for i := range p {
			d := g[i] + wd*p[i]
			buf[i] = d
			if a.Nesterov {
				d += mom * d
			}
			p[i] -= lr * d
		}
	default:
		buf = buf[:len(p)]
		damp := 1 - a.Dampening
		for i := range p {
			d := g[i] + wd*p[i]
			b := mom*buf[i] + damp*d
			buf[i] = b
			if a.Nesterov {
				d += mom * b
			} else {
				d = b
			}
			p[i] -= lr * d
		}
	}
}

// Axpy computes y[i] += alpha·x[i] with the kernel set's vector kernel;
// len(y) must be at least len(x). Each element's result is the same
// however the slices are cut (a sum split across goroutines gives the
// bits of an unsplit one).
func Axpy(alpha float32, x, y []float32) { kern.axpyExact(alpha, x, y[:len(x)]) }

// Scale computes dst[i] = alpha·x[i] with the kernel set's vector kernel;
// len(x) must be at least len(dst). dst may alias x.
func Scale(dst []float32, alpha float32, x []float32) { vecScale(dst, alpha, x[:len(dst)]) }
