package tensorcore

import (
	"fmt"
	"time"
)

// Profile times a tape's ops, for finding where a training step's time
// goes. Give one to Tape.SetProfile; every op recorded after it, and every
// backward rule run, adds to it. An op's forward time is the time from its
// recording to the next op's (so it includes whatever the caller did in
// between, which in a network is nearly nothing), the last op's until
// Backward starts. A Profile of a tape whose kernels run on several cores
// measures wall time; profile a one-worker Pool to attribute time to ops.
// Not safe for concurrent use.
type Profile struct {
	// Ops holds one entry per op position, in recording order, summed over
	// the steps profiled.
	Ops []OpProfile

	last     time.Time
	lastNode int   // index into Ops of the op whose forward is being timed, -1 none
	lastNd   *node // that op
}

// OpProfile is one op position's time and arithmetic.
type OpProfile struct {
	Op                string // the op's name: Conv2D, BatchNormReLU, MaxPool2D, …
	Detail            string // its shape in words: "3x3/2 64→128 @56×56, batch 16"
	Forward, Backward time.Duration
	// FwdFLOP and BwdFLOP are the floating-point operations of the GEMMs
	// of one forward and one backward (convolutions, linear layers,
	// matrix products; 0 for the memory-bound ops).
	FwdFLOP, BwdFLOP float64
	Steps            int // the steps summed
}

// SetProfile makes the tape time its ops into p from now on (nil: stop).
func (tp *Tape) SetProfile(p *Profile) {
	tp.prof = p
	if p != nil {
		p.lastNode = -1
	}
}

// profileRecord is called as nd is recorded at position i.
func (tp *Tape) profileRecord(i int, nd *node) {
	p := tp.prof
	now := time.Now()
	if i == 0 {
		p.lastNode = -1 // a new step: the last op's forward ended at Backward
	}
	p.stopForward(now)
	for len(p.Ops) <= i {
		p.Ops = append(p.Ops, OpProfile{})
	}
	op := &p.Ops[i]
	op.Op = opName(nd)
	op.Steps++
	p.lastNode, p.lastNd, p.last = i, nd, now
}

// stopForward ends the forward timing of the op in progress at now and
// describes it (its arguments are set by then).
func (p *Profile) stopForward(now time.Time) {
	if p.lastNode >= 0 {
		p.Ops[p.lastNode].Forward += now.Sub(p.last)
		p.detail(p.lastNode, p.lastNd)
		p.lastNode, p.lastNd = -1, nil
	}
}

// detail fills the shape and arithmetic of op i.
func (p *Profile) detail(i int, nd *node) {
	op := &p.Ops[i]
	switch nd.kind {
	case opConv2D, opConvT2D:
		g := nd.geom
		op.Detail = fmt.Sprintf("%dx%d/%d %d→%d @%d×%d, batch %d", g.KH, g.KW, g.StrideH, g.C, g.O, g.H, g.W, g.N)
		f := 2 * float64(g.N*g.O*g.OH*g.OW) * float64(g.C/g.Groups*g.KH*g.KW)
		op.FwdFLOP = f
		op.BwdFLOP = 0
		if nd.b != nil && nd.b.needGrad {
			op.BwdFLOP += f
		}
		if nd.a.needGrad {
			op.BwdFLOP += f
		}
	case opLinear:
		l := nd.lin
		op.Detail = fmt.Sprintf("%d→%d, batch %d", l.in, l.out, l.n)
		f := 2 * float64(l.n*l.in*l.out)
		op.FwdFLOP, op.BwdFLOP = f, 0
		if nd.b.needGrad {
			op.BwdFLOP += f
		}
		if nd.a.needGrad {
			op.BwdFLOP += f
		}
	default:
		op.Detail = fmt.Sprint(nd.out.Value.Shape)
	}
}

// opName names nd's op as its Tape method does.
func opName(nd *node) string {
	if nd.kind == opBatchNorm && nd.bn.relu {
		return "BatchNormReLU"
	}
	if int(nd.kind) < len(opNames) && opNames[nd.kind] != "" {
		return opNames[nd.kind]
	}
	return fmt.Sprintf("op%d", nd.kind)
}

var opNames = [...]string{
	opMatMul: "MatMul", opLinear: "Linear", opConv2D: "Conv2D", opConvT2D: "ConvTranspose2D",
	opMaxPool2D: "MaxPool2D", opAvgPool2D: "AvgPool2D", opAdd: "Add", opSub: "Sub", opMul: "Mul",
	opDiv: "Div", opAddScalar: "AddScalar", opMulScalar: "MulScalar", opReLU: "ReLU",
	opLeakyReLU: "LeakyReLU", opTanh: "Tanh", opSigmoid: "Sigmoid", opSoftplus: "Softplus",
	opExp: "Exp", opLog: "Log", opNeg: "Neg", opSquare: "Square", opSqrt: "Sqrt", opAbs: "Abs",
	opSoftmax: "Softmax", opLogSoftmax: "LogSoftmax", opSum: "Sum", opMax: "Max",
	opReshape: "Reshape", opTranspose: "Transpose", opConcat: "Concat", opSlice: "Slice",
	opPad2D: "Pad2D", opBatchNorm: "BatchNorm", opDropout: "Dropout", opGather: "Gather",
	opIndexSelect: "IndexSelect", opCrossEntropy: "CrossEntropy", opMSE: "MSE",
	opBCEWithLogits: "BCEWithLogits", opGlobalAvgPool: "GlobalAvgPool",
}
