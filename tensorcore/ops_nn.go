package tensorcore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// BatchNorm normalizes x, (N, C) or (N, C, H, W), per channel over N (and
// H, W), then scales by gamma and shifts by beta (each (C), or nil for no
// affine part). In training it uses the batch mean and biased variance and
// updates runMean and runVar (each (C), or nil to skip) in place like
// PyTorch: run = (1-momentum)*run + momentum*batch, with the unbiased batch
// variance in runVar. In evaluation it normalizes with runMean and runVar,
// which must then be given.
func (tp *Tape) BatchNorm(x, gamma, beta *Var, runMean, runVar *Tensor, momentum, eps float32, training bool) *Var {
	return tp.batchNorm(x, gamma, beta, runMean, runVar, momentum, eps, training, false)
}

// BatchNormReLU is ReLU(BatchNorm(...)) with BatchNorm's arguments and
// semantics (running statistics updated alike), fused: forward writes the
// rectified output in the pass that normalizes, and backward (in training)
// masks the incoming gradient while reducing it, recomputing the mask from
// x, so no normalized tensor is stored, and backward reads only x and the
// output's gradient. It gives the same bits as BatchNorm then ReLU.
func (tp *Tape) BatchNormReLU(x, gamma, beta *Var, runMean, runVar *Tensor, momentum, eps float32, training bool) *Var {
	return tp.batchNorm(x, gamma, beta, runMean, runVar, momentum, eps, training, true)
}

func (tp *Tape) batchNorm(x, gamma, beta *Var, runMean, runVar *Tensor, momentum, eps float32, training, relu bool) *Var {
	xs := x.Value.Shape
	if len(xs) != 2 && len(xs) != 4 {
		panic(fmt.Sprintf("tensorcore: BatchNorm: input %v is neither 2-D nor 4-D", xs))
	}
	n, c := xs[0], xs[1]
	plane := 1
	if len(xs) == 4 {
		plane = xs[2] * xs[3]
	}
	for _, t := range [...]*Var{gamma, beta} {
		if t != nil && shapeLen(t.Value.Shape) != c {
			panic(fmt.Sprintf("tensorcore: BatchNorm: input %v and affine parameter %v do not fit", xs, t.Value.Shape))
		}
	}
	for _, t := range [...]*Tensor{runMean, runVar} {
		if t != nil && len(t.Data) != c {
			panic(fmt.Sprintf("tensorcore: BatchNorm: input %v and running statistic %v do not fit", xs, t.Shape))
		}
	}
	if !training && (runMean == nil || runVar == nil) {
		panic("tensorcore: BatchNorm: evaluation needs running statistics")
	}
	nd := tp.push(opBatchNorm, x, gamma, beta, xs, false)
	nd.aux = growF(nd.aux, 2*c)
	nd.bn = bnArgs{n: n, c: c, plane: plane, momentum: momentum, eps: eps, training: training, relu: relu,
		runMean: runMean, runVar: runVar, mean: nd.aux[:c], invStd: nd.aux[c : 2*c]}
	nd.phase = parBatchNorm
	tp.pool.forTask(c, max(1, parGrain/max(n*plane, 1)), nd)
	return nd.out
}

// batchNormForward normalizes channels [c0, c1) of nd's input, saving each
// channel's mean and inverse standard deviation and, in training, updating
// the running statistics.
func batchNormForward(nd *node, c0, c1 int) {
	bn := &nd.bn
	n, c, plane := bn.n, bn.c, bn.plane
	momentum, eps := bn.momentum, float64(bn.eps)
	training := bn.training
	runMean, runVar := bn.runMean, bn.runVar
	mean, inv := bn.mean, bn.invStd
	xd, y := nd.a.Value.Data, nd.out.Value.Data
	m := n * plane
	for ch := c0; ch < c1; ch++ {
		if training {
			var s float64
			for i := 0; i < n; i++ {
				s = kern.bnSum(xd[(i*c+ch)*plane:(i*c+ch+1)*plane], s)
			}
			mu := s / float64(m)
			var q float64
			for i := 0; i < n; i++ {
				q = kern.bnSumSqDev(xd[(i*c+ch)*plane:(i*c+ch+1)*plane], mu, q)
			}
			variance := q / float64(m)
			mean[ch] = float32(mu)
			inv[ch] = float32(1 / math.Sqrt(variance+eps))
			if runMean != nil {
				runMean.Data[ch] = (1-momentum)*runMean.Data[ch] + momentum*float32(mu)
			}
			if runVar != nil {
				unbiased := variance
				if m > 1 {
					unbiased = q / float64(m-1)
				}
				runVar.Data[ch] = (1-momentum)*runVar.Data[ch] + momentum*float32(unbiased)
			}
		} else {
			mean[ch] = runMean.Data[ch]
			inv[ch] = float32(1 / math.Sqrt(float64(runVar.Data[ch])+eps))
		}
		sc, sh := bnAffine(nd, ch)
		for i := 0; i < n; i++ {
			o := (i*c + ch) * plane
			kern.bnScaleShift(y[o:o+plane], xd[o:o+plane], sc, sh, bn.relu)
		}
	}
}

// Dropout zeroes each element of x with probability p and scales the rest
// by 1/(1-p) when training; otherwise (or when p is 0) it returns x itself
// and records nothing. The mask is drawn from rng, one Float32 per element
// in order.
func (tp *Tape) Dropout(x *Var, p float32, rng *rand.Rand, training bool) *Var {
	if !training || p == 0 {
		return x
	}
	if p < 0 || p > 1 {
		panic(fmt.Sprintf("tensorcore: Dropout: probability %v outside [0, 1]", p))
	}
	nd := tp.unary(opDropout, x)
	nd.aux = growF(nd.aux, len(x.Value.Data))
	keep := float32(0)
	if p < 1 {
		keep = 1 / (1 - p)
	}
	mask, y := nd.aux, nd.out.Value.Data
	for i, v := range x.Value.Data {
		if rng.Float32() < p {
			mask[i] = 0
		} else {
			mask[i] = keep
		}
		y[i] = v * mask[i]
	}
	return nd.out
}

// CrossEntropy returns the mean over rows of -log softmax(logits)[label],
// shape (1), for logits (N, C) and one label in [0, C) per row, fused and
// numerically stable. labels must not change before Backward.
func (tp *Tape) CrossEntropy(logits *Var, labels []int) *Var {
	return tp.crossEntropy("CrossEntropy", logits, labels, 0)
}

// CrossEntropySmoothed is CrossEntropy against labels smoothed as PyTorch's
// cross_entropy(label_smoothing=smoothing), smoothing in [0, 1]: each row's
// target puts 1-smoothing+smoothing/C on its label and smoothing/C on every
// other class, so the loss of a row is
// (1-smoothing)·(-log p[label]) + smoothing/C · Σ_c -log p[c].
// Smoothing 0 is CrossEntropy, bit for bit.
func (tp *Tape) CrossEntropySmoothed(logits *Var, labels []int, smoothing float32) *Var {
	if !(smoothing >= 0 && smoothing <= 1) {
		panic(fmt.Sprintf("tensorcore: CrossEntropySmoothed: smoothing %v outside [0, 1]", smoothing))
	}
	return tp.crossEntropy("CrossEntropySmoothed", logits, labels, smoothing)
}

func (tp *Tape) crossEntropy(name string, logits *Var, labels []int, smoothing float32) *Var {
	ls := logits.Value.Shape
	if len(ls) != 2 || len(labels) != ls[0] {
		panic(fmt.Sprintf("tensorcore: %s: logits %v with %d labels", name, ls, len(labels)))
	}
	n, c := ls[0], ls[1]
	shape := [1]int{1}
	nd := tp.push(opCrossEntropy, logits, nil, nil, shape[:], false)
	nd.idx = labels
	nd.scalar = smoothing
	nd.aux = growF(nd.aux, n*c)
	probs, xd := nd.aux, logits.Value.Data
	softmaxForward(xd, probs, n, c, 1, false)
	var loss float64
	for i, l := range labels {
		if l < 0 || l >= c {
			panic(fmt.Sprintf("tensorcore: %s: label %d of row %d outside [0, %d)", name, l, i, c))
		}
		row := xd[i*c : (i+1)*c]
		m := row[0]
		for _, v := range row {
			if v > m || v != v {
				m = v
			}
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v - m))
		}
		if smoothing == 0 {
			loss += float64(m) + math.Log(s) - float64(row[l])
			continue
		}
		// Σ_c -log p[c] = C·(m + log s) - Σ_c x[c].
		var sx float64
		for _, v := range row {
			sx += float64(v)
		}
		e := float64(smoothing)
		loss += float64(m) + math.Log(s) - (1-e)*float64(row[l]) - e/float64(c)*sx
	}
	nd.out.Value.Data[0] = float32(loss / float64(n))
	return nd.out
}

// MSE returns the mean of (a-b)², shape (1); a and b must have one shape.
func (tp *Tape) MSE(a, b *Var) *Var {
	if !slices.Equal(a.Value.Shape, b.Value.Shape) {
		panic(fmt.Sprintf("tensorcore: MSE: shapes %v and %v differ", a.Value.Shape, b.Value.Shape))
	}
	shape := [1]int{1}
	nd := tp.push(opMSE, a, b, nil, shape[:], false)
	var s float64
	bd := b.Value.Data
	for i, v := range a.Value.Data {
		d := float64(v - bd[i])
		s += d * d
	}
	nd.out.Value.Data[0] = float32(s / float64(max(len(bd), 1)))
	return nd.out
}

// BCEWithLogits returns the mean binary cross-entropy of targets y against
// the sigmoid of logits x, shape (1), computed stably as
// max(x,0) - x*y + log(1+exp(-|x|)); x and y must have one shape.
func (tp *Tape) BCEWithLogits(x, y *Var) *Var {
	if !slices.Equal(x.Value.Shape, y.Value.Shape) {
		panic(fmt.Sprintf("tensorcore: BCEWithLogits: shapes %v and %v differ", x.Value.Shape, y.Value.Shape))
	}
	shape := [1]int{1}
	nd := tp.push(opBCEWithLogits, x, y, nil, shape[:], false)
	var s float64
	yd := y.Value.Data
	for i, v := range x.Value.Data {
		f := float64(v)
		s += max(f, 0) - f*float64(yd[i]) + math.Log1p(math.Exp(-math.Abs(f)))
	}
	nd.out.Value.Data[0] = float32(s / float64(max(len(yd), 1)))
	return nd.out
}
