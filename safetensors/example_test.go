package safetensors_test

import (
	"bytes"
	"fmt"

	"github.com/ringtrain/ringtrain/safetensors"
)

func Example() {
	var buf bytes.Buffer
	tensors := map[string]safetensors.Tensor{
		"fc.weight": safetensors.F32([]int{2, 2}, []float32{1, 2, 3, 4}),
		"fc.bias":   safetensors.F32([]int{2}, []float32{0.5, -0.5}),
	}
	if err := safetensors.Write(&buf, tensors, map[string]string{"step": "100"}); err != nil {
		panic(err)
	}
	f, err := safetensors.Read(&buf)
	if err != nil {
		panic(err)
	}
	for _, name := range f.Names() {
		t, _ := f.Tensor(name)
		v, _ := t.Float32s()
		fmt.Println(name, t.DType, t.Shape, v)
	}
	fmt.Println("step", f.Metadata["step"])
	// Output:
	// fc.bias F32 [2] [0.5 -0.5]
	// fc.weight F32 [2 2] [1 2 3 4]
	// step 100
}
