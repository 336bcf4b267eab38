package job

import (
	"path/filepath"
	"testing"
)

// TestExampleJobFiles keeps the shipped job files parseable and valid, and
// the single-node and cluster LeNet-5 examples the default job (the same
// hash: a checkpoint of one resumes the other).
func TestExampleJobFiles(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example job files: %v", err)
	}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	d := Default()
	for _, f := range []string{"lenet5-mnist.yaml", "lenet5-mnist-cluster.yaml"} {
		s, err := Load("../examples/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if s.Hash() != d.Hash() {
			t.Errorf("examples/%s is no longer the default job:\n file    %+v\n default %+v", f, s, d)
		}
	}
}
