//go:build !amd64 || noasm

package tensorcore

// bestBF16Kernels returns nil: this build has no bf16 assembly.
func bestBF16Kernels() *bf16KernelSet { return nil }
