package worker

import (
	"io"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/job"
)

func TestCheckJobCodec(t *testing.T) {
	for _, tc := range []struct{ codec, want string }{
		{"int8", `job: codec: allreduce: unknown codec "int8"`},
		{"bf16+lz4", `unknown compression "lz4"`},
		{"BF16", `unknown codec "BF16"`},
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
