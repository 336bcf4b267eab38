package models

import (
	"fmt"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// The losses below return a one-element Var, the mean over the batch, ready
// for Tape.Backward. labels must stay unchanged until Backward has run.

// CrossEntropy is the mean over the batch of -log softmax(logits)[label],
// for logits (N, C) and N labels in [0, C) (PyTorch F.cross_entropy).
func CrossEntropy(tp *tensorcore.Tape, logits *tensorcore.Var, labels []int) *tensorcore.Var {
	return tp.CrossEntropy(logits, labels)
}

// CrossEntropySmoothed is CrossEntropy against targets that mix smoothing
// of a uniform distribution over the C classes into the one-hot label
// (PyTorch's label_smoothing): the batch mean of
// (1-smoothing)·(-log p[label]) + smoothing·mean over classes of -log p.
// A smoothing of 0 is CrossEntropy.
func CrossEntropySmoothed(tp *tensorcore.Tape, logits *tensorcore.Var, labels []int, smoothing float32) *tensorcore.Var {
	return tp.CrossEntropySmoothed(logits, labels, smoothing)
}

// NLL is the mean over the batch of -logProbs[i, labels[i]], for
// log-probabilities (N, C) such as LogSoftmax's output (PyTorch
// F.nll_loss).
func NLL(tp *tensorcore.Tape, logProbs *tensorcore.Var, labels []int) *tensorcore.Var {
	return tp.Neg(tp.MeanAll(tp.Gather(logProbs, 1, labels)))
}

// MSE is the mean of (a-b)² over all elements.
func MSE(tp *tensorcore.Tape, a, b *tensorcore.Var) *tensorcore.Var { return tp.MSE(a, b) }

// L1 is the mean of |a-b| over all elements.
func L1(tp *tensorcore.Tape, a, b *tensorcore.Var) *tensorcore.Var {
	return tp.MeanAll(tp.Abs(tp.Sub(a, b)))
}

// BCEWithLogits is the mean over all elements of the binary cross-entropy
// between sigmoid(x) and targets y in [0, 1], computed stably from the
// logits x.
func BCEWithLogits(tp *tensorcore.Tape, x, y *tensorcore.Var) *tensorcore.Var {
	return tp.BCEWithLogits(x, y)
}

// MultiMargin is the multi-class hinge loss of PyTorch's MultiMarginLoss
// (p = 1): for scores x (N, C) and labels y,
//
//	loss = mean over i of Σ_{j≠y_i} max(0, margin - x[i,y_i] + x[i,j]) / C.
//
// It is computed over all j (the j = y_i term is exactly margin, with zero
// gradient) and the constant margin/C subtracted. margin must be positive.
func MultiMargin(tp *tensorcore.Tape, x *tensorcore.Var, labels []int, margin float32) *tensorcore.Var {
	s := x.Value.Shape
	if len(s) != 2 {
		panic(fmt.Sprintf("models: MultiMargin: scores have shape %v, want (N, C)", s))
	}
	c := s[1]
	picked := tp.Reshape(tp.Gather(x, 1, labels), s[0], 1) // (N, 1): x[i, y_i]
	h := tp.ReLU(tp.AddScalar(tp.Sub(x, picked), margin))  // (N, C)
	return tp.AddScalar(tp.MeanAll(h), -margin/float32(c))
}

// CountCorrect returns how many rows of logits (N, C) have their largest
// score at the row's label (the first maximum wins ties).
func CountCorrect(logits *tensorcore.Tensor, labels []int) int {
	n, c := logits.Shape[0], logits.Shape[1]
	correct := 0
	for i := 0; i < n; i++ {
		row := logits.Data[i*c : (i+1)*c]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if i < len(labels) && best == labels[i] {
			correct++
		}
	}
	return correct
}

// MSETargets is the mean over all elements of (out − t)² for outputs (N,
// C), with targets t of +1 at each row's label and −1 elsewhere: the
// objective of nets whose output units are squashed (LeCun et al. 1989).
// It is computed as mean((out+1)²) − (4/C)·mean over rows of out[label],
// which needs no target tensor.
func MSETargets(tp *tensorcore.Tape, out *tensorcore.Var, labels []int) *tensorcore.Var {
	s := out.Value.Shape
	if len(s) != 2 || s[1] == 0 {
		panic(fmt.Sprintf("models: MSETargets: outputs have shape %v, want (N, C)", s))
	}
	sq := tp.MeanAll(tp.Square(tp.AddScalar(out, 1)))
	picked := tp.MeanAll(tp.Gather(out, 1, labels))
	return tp.Sub(sq, tp.MulScalar(picked, 4/float32(s[1])))
}

// Loss is a training objective: the batch's mean loss of outputs (N, C)
// against labels, a one-element Var ready for Tape.Backward.
type Loss func(tp *tensorcore.Tape, out *tensorcore.Var, labels []int) *tensorcore.Var

// LossNames are the names NewLoss knows; "" is cross_entropy.
var LossNames = []string{"cross_entropy", "mse"}

// NewLoss returns the named training loss: cross_entropy (or "": softmax
// cross-entropy, with label smoothing) or mse (MSETargets, for nets with
// squashed outputs; smoothing must be 0).
func NewLoss(name string, smoothing float32) (Loss, error) {
	switch name {
	case "", "cross_entropy":
		return func(tp *tensorcore.Tape, out *tensorcore.Var, labels []int) *tensorcore.Var {
			return tp.CrossEntropySmoothed(out, labels, smoothing)
		}, nil
	case "mse":
		if smoothing != 0 {
			return nil, fmt.Errorf("models: loss mse takes no label smoothing")
		}
		return MSETargets, nil
	}
	return nil, fmt.Errorf("models: unknown loss %q (known: cross_entropy, mse)", name)
}
