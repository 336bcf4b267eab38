package worker

import (
	"cmp"
	"fmt"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/job"
)

// CheckJob validates a job as a worker will run it: the spec's own checks
// and the names the worker's packages own that can be checked without
// loading anything (the gradient codec).
func CheckJob(spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if err := allreduce.CheckCodec(codecName(spec)); err != nil {
		return fmt.Errorf("job: codec: %w", err)
	}
	return nil
}

// gradientCodec returns the codec the job names for gradients (fp32 when
// none), decoding frames of at most maxFrameBytes bytes. A codec that is
// an io.Closer must be closed after use.
func gradientCodec(spec job.Spec, maxFrameBytes int) (allreduce.Codec, error) {
	c, err := allreduce.NewCodec(codecName(spec), maxFrameBytes)
	if err != nil {
		return nil, fmt.Errorf("job: codec: %w", err)
	}
	return c, nil
}

// codecName is the job's gradient codec: fp32 when it names none.
func codecName(spec job.Spec) string { return cmp.Or(spec.Codec, "fp32") }
