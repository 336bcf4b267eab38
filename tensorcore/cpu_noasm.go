//go:build !amd64 || noasm

package tensorcore

// asmKernels is empty: this build has no assembly.
func asmKernels() []*kernelSet { return nil }

// bestKernels returns the plain-Go kernels: this build has no assembly.
func bestKernels() *kernelSet { return goKernels }
