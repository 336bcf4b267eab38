package tensorcore

// kernelSet is one implementation of the innermost loops: the SGEMM
// micro-kernel and the vector kernels. The drivers (Sgemm, the convolutions,
// the vec* dispatchers) are shared; only these leaves differ. Tests run the
// same suite against every set in availableKernels.
type kernelSet struct {
	name string

	// gemm computes C[0:rows, 0:nr] = alpha*Ap*Bp + beta*C, where Ap is
	// kc groups of mr floats (a column of an mr-row panel each) and Bp is
	// kc groups of nr floats, C has row stride ldc and 1 <= rows <= mr.
	// When beta is 0, C is not read. All pointers must address enough
	// memory. mr divides gemmMC, nr divides gemmNC, mr <= gemmMaxMR and
	// nr <= gemmMaxNR.
	gemm   func(kc int, a, b, c *float32, ldc, rows int, alpha, beta float32)
	mr, nr int

	// dotTile adds to out[r*ldo+c] the dot product over j < n of
	// a[r*lda+j] and b[boffs[c]+j], for r < dtR and c < dtC: a tile of
	// C = A·Bᵀ with both operands contiguous in the reduction. n is a
	// positive multiple of 16. Each sum is taken in a fixed lane order.
	dotTile  func(n int, a *float32, lda int, b *float32, boffs *int, out *float32, ldo int)
	dtR, dtC int

	axpy     func(alpha float32, x, y []float32)
	add      func(dst, a, b []float32)
	mul      func(dst, a, b []float32)
	scale    func(dst []float32, alpha float32, x []float32)
	dot      func(x, y []float32) float32
	sum      func(x []float32) float32
	max      func(x []float32) float32
	relu     func(dst, x []float32)
	reluGrad func(dst, gy, x []float32)
	tanh     func(dst, x []float32)
	tanhGrad func(gx, gy, y []float32)

	// maxPoolS2 and maxPool2x2Grad are max pooling's stride-2 row kernels:
	// see maxPoolS2Ref and maxPool2x2GradRef.
	maxPoolS2      func(y []float32, arg []int32, x []float32, off, ldx, nr, kw int)
	maxPool2x2Grad func(g, gy []float32, arg []int32, base, ld int)

	// The batch-normalization row kernels (bn.go): see bnSumRef,
	// bnSumSqDevRef, bnScaleShiftRef, bnGradSumsRef and bnGradApplyRef.
	// The float64 sums may differ from the references in their order.
	bnSum        func(x []float32, s float64) float64
	bnSumSqDev   func(x []float32, mu, q float64) float64
	bnScaleShift func(y, x []float32, sc, sh float32, relu bool)
	bnGradSums   func(gy, x []float32, mu, is, sc, sh float32, relu bool, sdy, sdyx float64) (float64, float64)
	bnGradApply  func(gx, gy, x []float32, k, mu, is, mdy, mdyx, sc, sh float32, relu bool)

	// sgd is SGDStep and axpyExact is Axpy (optim.go), slices of equal
	// length: each element's result independent of where slices start.
	sgd       func(p, g, buf []float32, a SGDArgs)
	axpyExact func(alpha float32, x, y []float32)
}

// goKernels is the plain-Go kernel set, used when the CPU lacks AVX2 and FMA
// or the build has the noasm tag.
var goKernels = &kernelSet{
	name:     "go",
	gemm:     sgemmKernel6x16Go,
	mr:       6,
	nr:       16,
	dotTile:  dotTile4x4Go,
	dtR:      4,
	dtC:      4,
	axpy:     vecAxpyRef,
	add:      vecAddRef,
	mul:      vecMulRef,
	scale:    vecScaleRef,
	dot:      vecDotRef,
	sum:      vecSumRef,
	max:      vecMaxRef,
	relu:     vecReluRef,
	reluGrad: vecReluGradRef,
	tanh:     vecTanhRef,
	tanhGrad: vecTanhGradRef,

	maxPoolS2:      maxPoolS2Ref,
	maxPool2x2Grad: maxPool2x2GradRef,

	bnSum:        bnSumRef,
	bnSumSqDev:   bnSumSqDevRef,
	bnScaleShift: bnScaleShiftRef,
	bnGradSums:   bnGradSumsRef,
	bnGradApply:  bnGradApplyRef,

	sgd:       SGDStepRef,
	axpyExact: vecAxpyRef,
}

// kern is the fastest kernel set this CPU supports, chosen once at start.
var kern = bestKernels()

// availableKernels lists every kernel set that runs on this CPU, plain Go
// first.
func availableKernels() []*kernelSet {
	return append([]*kernelSet{goKernels}, asmKernels()...)
}
