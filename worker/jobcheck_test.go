package worker

import (
	"io"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/job"
)

func TestCheckJobCodec(t *testing.T) {
	for _, tc := range []struct{ codec, want string }{
		{"int8", `codec: allreduce: unknown gradient codec "int8" (want fp32, bf16`},
		{"bf16+lz4", `unknown gradient codec "bf16+lz4"`},
		{"BF16", `unknown gradient codec "BF16"`},
	} {
		s := job.Default()
		s.Codec = tc.codec
		if err := CheckJob(s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("codec %q: %v, want an error containing %q", tc.codec, err, tc.want)
		}
	}
	for _, name := range []string{"", "fp32", "bf16", "fp16", "bf16+zstd", "fp32+s2"} {
		s := job.Default()
		s.Codec = name
		if err := CheckJob(s); err != nil {
			t.Errorf("codec %q: %v", name, err)
		}
		c, err := gradientCodec(s, 0)
		if err != nil {
			t.Fatalf("codec %q: %v", name, err)
		}
		if want := name; want != "" && c.Name() != want || want == "" && c.Name() != "fp32" {
			t.Errorf("codec %q gives %s", name, c.Name())
		}
		if cl, ok := c.(io.Closer); ok {
			cl.Close()
		}
	}
	s := job.Default()
	s.Epochs = 0
	if err := CheckJob(s); err == nil || !strings.Contains(err.Error(), "epochs") {
		t.Errorf("CheckJob missed the spec's own error: %v", err)
	}
}

// TestCheckJobNames: every name a job gives is checked once, and the error
// names the key and the valid choices.
func TestCheckJobNames(t *testing.T) {
	for _, tc := range []struct {
		edit func(*job.Spec)
		want []string
	}{
		{func(s *job.Spec) { s.Model = "lenet6" }, []string{`model: unknown model "lenet6"`, "lenet5", "resnet8"}},
		{func(s *job.Spec) { s.Dataset = "mnsit" }, []string{`dataset:`, `"mnsit"`, "fashion-mnist"}},
		{func(s *job.Spec) { s.Optimizer.Name = "adagrad" }, []string{`optimizer.name: unknown optimizer "adagrad"`, "rmsprop, sgd"}},
		{func(s *job.Spec) { s.Codec = "powersgd-r0" }, []string{"codec:", "powersgd-rN"}},
		{func(s *job.Spec) { s.Model, s.Codec = "x", "y" }, []string{"model:", "codec:"}},
	} {
		s := job.Default()
		tc.edit(&s)
		err := CheckJob(s)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want an error containing %q", s, err, w)
			}
		}
	}
	s := job.Default()
	s.Codec = "powersgd-r4"
	if err := CheckJob(s); err != nil {
		t.Errorf("powersgd-r4: %v", err)
	}
	if c, err := gradientCodec(s, 0); err != nil || c.Name() != "fp32" {
		t.Errorf("powersgd-r4's factors travel as %v, %v; want fp32", c, err)
	}
}
