package main

/*
#cgo CFLAGS: -I/usr/include/x86_64-linux-gnu/openblas-pthread
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import "unsafe"

// setThreads sets OpenBLAS's thread count for the following calls.
func setThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

// coreName is the kernel family OpenBLAS selected for this CPU.
func coreName() string { return C.GoString(C.openblas_get_corename()) }

// config is OpenBLAS's build configuration string.
func config() string { return C.GoString(C.openblas_get_config()) }

// sgemm calls cblas_sgemm on row-major matrices with the same argument
// order as tensorcore.Sgemm.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(unsafe.Pointer(&a[0])), C.blasint(lda),
		(*C.float)(unsafe.Pointer(&b[0])), C.blasint(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}
