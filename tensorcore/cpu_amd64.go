//go:build amd64 && !noasm

package tensorcore

import "golang.org/x/sys/cpu"

// avx2Kernels need AVX2 and FMA: a 6×16 SGEMM micro-kernel on YMM
// registers and the vector kernels.
var avx2Kernels = &kernelSet{
	name:     "avx2",
	gemm:     sgemmKernel6x16AVX2,
	mr:       6,
	nr:       16,
	dotTile:  dotTile3x4AVX2,
	dtR:      3,
	dtC:      4,
	axpy:     vecAxpyAVX2,
	add:      vecAddAVX2,
	mul:      vecMulAVX2,
	scale:    vecScaleAVX2,
	dot:      vecDotAVX2,
	sum:      vecSumAVX2,
	max:      vecMaxAVX2,
	relu:     vecReluAVX2,
	reluGrad: vecReluGradAVX2,
	tanh:     vecTanhAVX2,
	tanhGrad: vecTanhGradAVX2,

	maxPoolS2:      maxPoolS2KernAVX2,
	maxPool2x2Grad: maxPool2x2GradKernAVX2,

	bnSum:        bnSumKernAVX2,
	bnSumSqDev:   bnSumSqDevKernAVX2,
	bnScaleShift: bnScaleShiftKernAVX2,
	bnGradSums:   bnGradSumsKernAVX2,
	bnGradApply:  bnGradApplyKernAVX2,

	sgd:       sgdKernAVX2,
	axpyExact: axpyExactAVX2,
}

// avx512Kernels add a 12×32 SGEMM micro-kernel on ZMM registers (AVX-512F)
// to the AVX2 vector kernels.
var avx512Kernels = func() *kernelSet {
	ks := *avx2Kernels
	ks.name = "avx512"
	ks.gemm, ks.mr, ks.nr = sgemmKernel12x32AVX512, 12, 32
	ks.dotTile, ks.dtR, ks.dtC = dotTile4x4AVX512, 4, 4
	return &ks
}()

func hasAVX2() bool   { return cpu.X86.HasAVX2 && cpu.X86.HasFMA }
func hasAVX512() bool { return hasAVX2() && cpu.X86.HasAVX512F }

// asmKernels lists the assembly kernel sets this CPU (and OS) can run,
// slowest first.
func asmKernels() []*kernelSet {
	var ks []*kernelSet
	if hasAVX2() {
		ks = append(ks, avx2Kernels)
	}
	if hasAVX512() {
		ks = append(ks, avx512Kernels)
	}
	return ks
}

// bestKernels picks the widest kernels the CPU supports.
func bestKernels() *kernelSet {
	if ks := asmKernels(); len(ks) > 0 {
		return ks[len(ks)-1]
	}
	return goKernels
}
