package tensorcore_test

import (
	"fmt"
	"log"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// A job's "precision: bf16" is honoured per Pool; every Pool that runs the
// job's kernels (a worker may keep one per replica) is set the same way,
// and a CPU without AVX512_BF16 goes on in fp32 with the error as its
// message.
func ExamplePool_SetPrecision() {
	pr, err := tensorcore.ParsePrecision("bf16")
	if err != nil {
		log.Fatal(err)
	}
	p := tensorcore.NewPool(2)
	defer p.Close()
	if err := p.SetPrecision(pr); err != nil {
		fmt.Println("precision:", err)
	}
	tp := tensorcore.NewTape(p) // MatMul, Linear and Conv2D on tp now use p's precision
	_ = tp
	fmt.Println("computing in", p.Precision())
}
