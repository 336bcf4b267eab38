package tensorcore

import "unsafe"

// unsafeSlice views n floats starting at p; used only by the plain-Go
// micro-kernel, whose callers guarantee the extent (see kernelSet.gemm6x16).
func unsafeSlice(p *float32, n int) []float32 { return unsafe.Slice(p, n) }
