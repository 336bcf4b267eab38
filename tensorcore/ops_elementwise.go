package tensorcore

import "math"

// Add returns a + b with numpy/PyTorch broadcasting.
func (tp *Tape) Add(a, b *Var) *Var { return tp.binary(opAdd, a, b) }

// Sub returns a - b with broadcasting.
func (tp *Tape) Sub(a, b *Var) *Var { return tp.binary(opSub, a, b) }

// Mul returns a * b (elementwise) with broadcasting.
func (tp *Tape) Mul(a, b *Var) *Var { return tp.binary(opMul, a, b) }

// Div returns a / b (elementwise) with broadcasting.
func (tp *Tape) Div(a, b *Var) *Var { return tp.binary(opDiv, a, b) }

func (tp *Tape) binary(kind opKind, a, b *Var) *Var {
	var shape, sa, sb, so [maxDims]int
	r := broadcastShapes(a.Value.Shape, b.Value.Shape, &shape, &sa, &sb)
	nd := tp.push(kind, a, b, nil, shape[:r], false)
	contiguousStrides(shape[:r], so[:r])
	nd.bc.set(shape[:r], so[:r], sa[:r], sb[:r])
	nd.phase = parBinary
	tp.forRuns(&nd.bc, nd)
	return nd.out
}

// forRuns hands nd to the pool over the runs of bc: its rows, or, when bc
// is a single row, ranges of that row's elements. nd.run maps the range
// back with bcRange.
func (tp *Tape) forRuns(bc *bcast, nd *node) {
	rows, n := bc.rows()
	if rows == 1 {
		tp.pool.forTask(n, parGrain, nd)
		return
	}
	tp.pool.forTask(rows, max(1, parGrain/max(n, 1)), nd)
}

// bcRange turns a range from forRuns into a starting position, a number of
// runs and their length.
func bcRange(bc *bcast, lo, hi int) (it bcIter, runs, n int) {
	rows, n := bc.rows()
	if rows == 1 {
		it.oo, it.oa, it.ob = lo*bc.so[0], lo*bc.sa[0], lo*bc.sb[0]
		return it, 1, hi - lo
	}
	bc.seek(&it, lo)
	return it, hi - lo, n
}

// binaryForward computes runs of y = a op b from position it.
func binaryForward(kind opKind, bc *bcast, it bcIter, runs, n int, y, a, b []float32) {
	ia, ib := bc.sa[bc.rank-1], bc.sb[bc.rank-1]
	for r := 0; r < runs; r++ {
		yr := y[it.oo : it.oo+n]
		if ia == 1 && ib == 1 {
			ar, br := a[it.oa:it.oa+n], b[it.ob:it.ob+n]
			switch kind {
			case opAdd:
				vecAdd(yr, ar, br)
			case opSub:
				for j := range yr {
					yr[j] = ar[j] - br[j]
				}
			case opMul:
				vecMul(yr, ar, br)
			case opDiv:
				for j := range yr {
					yr[j] = ar[j] / br[j]
				}
			}
		} else {
			pa, pb := it.oa, it.ob
			switch kind {
			case opAdd:
				for j := range yr {
					yr[j] = a[pa] + b[pb]
					pa += ia
					pb += ib
				}
			case opSub:
				for j := range yr {
					yr[j] = a[pa] - b[pb]
					pa += ia
					pb += ib
				}
			case opMul:
				for j := range yr {
					yr[j] = a[pa] * b[pb]
					pa += ia
					pb += ib
				}
			case opDiv:
				for j := range yr {
					yr[j] = a[pa] / b[pb]
					pa += ia
					pb += ib
				}
			}
		}
		bc.next(&it)
	}
}

// AddScalar returns a + s.
func (tp *Tape) AddScalar(a *Var, s float32) *Var { return tp.elementwise(opAddScalar, a, s) }

// MulScalar returns a * s.
func (tp *Tape) MulScalar(a *Var, s float32) *Var { return tp.elementwise(opMulScalar, a, s) }

// ReLU returns max(x, 0), propagating NaN.
func (tp *Tape) ReLU(x *Var) *Var { return tp.elementwise(opReLU, x, 0) }

// LeakyReLU returns x where x > 0 and slope*x elsewhere.
func (tp *Tape) LeakyReLU(x *Var, slope float32) *Var { return tp.elementwise(opLeakyReLU, x, slope) }

// Tanh returns tanh(x).
func (tp *Tape) Tanh(x *Var) *Var { return tp.elementwise(opTanh, x, 0) }

// Sigmoid returns 1/(1+exp(-x)), computed stably.
func (tp *Tape) Sigmoid(x *Var) *Var { return tp.elementwise(opSigmoid, x, 0) }

// Softplus returns log(1+exp(x)), computed stably.
func (tp *Tape) Softplus(x *Var) *Var { return tp.elementwise(opSoftplus, x, 0) }

// Exp returns exp(x).
func (tp *Tape) Exp(x *Var) *Var { return tp.elementwise(opExp, x, 0) }

// Log returns the natural logarithm of x (NaN below 0, -Inf at 0).
func (tp *Tape) Log(x *Var) *Var { return tp.elementwise(opLog, x, 0) }

// Neg returns -x.
func (tp *Tape) Neg(x *Var) *Var { return tp.elementwise(opNeg, x, 0) }

// Square returns x*x.
func (tp *Tape) Square(x *Var) *Var { return tp.elementwise(opSquare, x, 0) }

// Sqrt returns the square root of x (NaN below 0).
func (tp *Tape) Sqrt(x *Var) *Var { return tp.elementwise(opSqrt, x, 0) }

// Abs returns |x|; its gradient at 0 is 0.
func (tp *Tape) Abs(x *Var) *Var { return tp.elementwise(opAbs, x, 0) }

func (tp *Tape) unary(kind opKind, x *Var) *node {
	return tp.push(kind, x, nil, nil, x.Value.Shape, false)
}

// elementwise records a one-input elementwise op with scalar argument s and
// runs it over the pool.
func (tp *Tape) elementwise(kind opKind, x *Var, s float32) *Var {
	nd := tp.unary(kind, x)
	nd.scalar = s
	nd.phase = parUnary
	tp.pool.forTask(len(x.Value.Data), elementGrain(kind), nd)
	return nd.out
}

// elementGrain is the least number of elements worth a worker: fewer for
// the ops that call into math per element.
func elementGrain(kind opKind) int {
	switch kind {
	case opTanh, opSigmoid, opSoftplus, opExp, opLog, opSqrt:
		return parGrain / 8
	}
	return parGrain
}

// unaryForward computes y = f(x) for the one-input elementwise op kind with
// scalar argument s.
func unaryForward(kind opKind, y, x []float32, s float32) {
	y = y[:len(x)]
	switch kind {
	case opAddScalar:
		for i, v := range x {
			y[i] = v + s
		}
	case opMulScalar:
		vecScale(y, s, x)
	case opReLU:
		vecRelu(y, x)
	case opLeakyReLU:
		for i, v := range x {
			if v > 0 {
				y[i] = v
			} else {
				y[i] = s * v
			}
		}
	case opTanh:
		vecTanh(y, x)
	case opSigmoid:
		for i, v := range x {
			y[i] = sigmoid32(v)
		}
	case opSoftplus:
		for i, v := range x {
			y[i] = softplus32(v)
		}
	case opExp:
		for i, v := range x {
			y[i] = float32(math.Exp(float64(v)))
		}
	case opLog:
		for i, v := range x {
			y[i] = float32(math.Log(float64(v)))
		}
	case opNeg:
		vecScale(y, -1, x)
	case opSquare:
		vecMul(y, x, x)
	case opSqrt:
		for i, v := range x {
			y[i] = float32(math.Sqrt(float64(v)))
		}
	case opAbs:
		for i, v := range x {
			y[i] = float32(math.Abs(float64(v)))
		}
	default:
		panic("tensorcore: unaryForward: not an elementwise op")
	}
}

func sigmoid32(v float32) float32 {
	if v >= 0 {
		return float32(1 / (1 + math.Exp(-float64(v))))
	}
	e := math.Exp(float64(v))
	return float32(e / (1 + e))
}

func softplus32(v float32) float32 {
	f := float64(v)
	return float32(max(f, 0) + math.Log1p(math.Exp(-math.Abs(f))))
}
