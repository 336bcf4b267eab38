package models

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stateDict lists m's state as PyTorch's state_dict holds it: one line
// "name<TAB>shape<TAB>dtype" per tensor, the shape as torchvision's golden
// lists write it (dimensions joined by x, "scalar" for none).
func stateDict(m *Model) []string {
	var lines []string
	add := func(infos []ParamInfo) {
		for _, p := range infos {
			dims := make([]string, len(p.Shape))
			for i, d := range p.Shape {
				dims[i] = fmt.Sprint(d)
			}
			lines = append(lines, p.Name+"\t"+strings.Join(dims, "x")+"\tfloat32")
		}
	}
	add(m.Arena.Params)
	add(m.Arena.BufferInfo)
	for _, c := range m.Arena.Counters {
		lines = append(lines, c+"\tscalar\tint64")
	}
	return lines
}

// readGolden reads testdata/torchvision/<model>.tsv (made by torchvision
// 0.14: see the README of the golden tensors) without its header.
func readGolden(t *testing.T, model string) []string {
	f, err := os.Open(filepath.Join("testdata", "torchvision", model+".tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "name\t") {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// The zoo's ImageNet nets at 3×224×224 with 1,000 classes hold exactly the
// names, shapes and dtypes of torchvision's state_dicts, which is what
// PyTorch's load_state_dict(strict=True) checks.
func TestTorchvisionStateDicts(t *testing.T) {
	for _, name := range []string{"resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "alexnet"} {
		m, err := Build(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		got, want := stateDict(m), readGolden(t, name)
		slices.Sort(got)
		slices.Sort(want)
		for _, l := range want {
			if _, found := slices.BinarySearch(got, l); !found {
				t.Errorf("%s: lacks %q", name, l)
			}
		}
		for _, l := range got {
			if _, found := slices.BinarySearch(want, l); !found {
				t.Errorf("%s: has %q, which torchvision's lacks", name, l)
			}
		}
	}
}
