package tensorcore

// parGrain is the least work (in elements) worth handing to another worker
// for the memory-bound ops below.
const parGrain = 1 << 14

// parPhase selects the kernel a node runs when handed to the pool.
type parPhase uint8

const (
	parNone               parPhase = iota
	parUnary                       // forward one-input elementwise op, over elements
	parUnaryGrad                   // its backward, accumulating into gx, over elements
	parReLUGrad                    // backward ReLU into a fresh gradient, over elements
	parMaxPool                     // forward max pooling, over planes
	parMaxPoolGrad                 // backward 2×2 max pooling into a fresh gradient, over planes
	parMaxPoolGradScatter          // backward max pooling into gx (acc: adding), over planes
	parBinary                      // forward Add/Sub/Mul/Div, over runs of the broadcast walk
	parBinaryGradA                 // backward into operand a's gradient gx, over runs
	parBinaryGradB                 // likewise operand b
	parBatchNorm                   // forward batch normalization, over channels
	parBatchNormGrad               // its backward, over channels
)

// run makes a node a pool task: it runs the node's current phase on the
// range [lo, hi). Handing the node itself (a pointer) to the pool keeps the
// parallel ops allocation-free. The ranges write disjoint outputs, so the
// results do not depend on the number of workers.
func (nd *node) run(part, lo, hi int) {
	switch nd.phase {
	case parUnary:
		unaryForward(nd.kind, nd.out.Value.Data[lo:hi], nd.a.Value.Data[lo:hi], nd.scalar)
	case parUnaryGrad:
		gradUnary(nd.kind, nd.gx[lo:hi], nd.out.Grad.Data[lo:hi], nd.a.Value.Data[lo:hi], nd.out.Value.Data[lo:hi], nd.scalar)
	case parReLUGrad:
		vecReluGrad(nd.gx[lo:hi], nd.out.Grad.Data[lo:hi], nd.out.Value.Data[lo:hi]) // y > 0 exactly where x > 0
	case parMaxPool:
		xs, ys := nd.a.Value.Shape, nd.out.Value.Shape
		maxPoolForward(nd.a.Value.Data, nd.out.Value.Data, nd.iaux, lo, hi, xs[2], xs[3], ys[2], ys[3], nd.pool.k, nd.pool.stride, nd.pool.pad)
	case parMaxPoolGrad:
		xs := nd.a.Value.Shape
		gradMaxPool2x2(nd.gx, nd.out.Grad.Data, nd.iaux, lo, hi, xs[2], xs[3])
	case parMaxPoolGradScatter:
		xs, ys := nd.a.Value.Shape, nd.out.Value.Shape
		gradMaxPoolPlanes(nd.gx, nd.out.Grad.Data, nd.iaux, lo, hi, xs[2]*xs[3], ys[2]*ys[3], nd.acc)
	case parBinary:
		it, runs, n := bcRange(&nd.bc, lo, hi)
		binaryForward(nd.kind, &nd.bc, it, runs, n, nd.out.Value.Data, nd.a.Value.Data, nd.b.Value.Data)
	case parBinaryGradA, parBinaryGradB:
		it, runs, n := bcRange(&nd.bc, lo, hi)
		gradBinaryRuns(nd, int(nd.phase-parBinaryGradA), it, runs, n)
	case parBatchNorm:
		batchNormForward(nd, lo, hi)
	case parBatchNormGrad:
		gradBatchNormChannels(nd, part, lo, hi)
	default:
		panic("tensorcore: node run with no parallel phase")
	}
}
