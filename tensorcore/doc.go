// Package tensorcore is ringtrain's CPU compute engine: contiguous float32
// tensors, the kernels that work on them (SGEMM, convolution, pooling,
// elementwise ops and reductions, each with a plain-Go reference), the
// reverse-mode autograd tape over a closed set of primitives with one
// gradient table, and the fixed worker pool that runs the kernels.
//
// tensorcore imports only the standard library and golang.org/x/sys/cpu.
// It knows nothing of networks, datasets or the wire.
package tensorcore
