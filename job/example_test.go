package job

import "testing"

// TestExampleJobFiles keeps the shipped job files parseable and valid.
func TestExampleJobFiles(t *testing.T) {
	s, err := Load("../examples/lenet5-mnist.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	d := Default()
	d.Name = s.Name
	if s.Hash() != d.Hash() {
		t.Errorf("examples/lenet5-mnist.yaml is no longer the default job:\n file    %+v\n default %+v", s, d)
	}
}
