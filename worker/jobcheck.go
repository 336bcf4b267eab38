package worker

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
)

// CheckJob validates a job as a worker will run it, without loading
// anything: the spec's own checks, and every name the engine's packages
// own — the model and the optimizer (models), the data set (dataset) and
// the gradient codec (allreduce). Each bad name is reported with its job key
// and the valid choices, so a typo in a job file is found once, where it
// is loaded (train, coordinator, worker), not by every worker at once.
func CheckJob(spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	var errs []error
	if !slices.Contains(models.Names(), spec.Model) {
		errs = append(errs, fmt.Errorf("model: unknown model %q (known: %s)", spec.Model, strings.Join(models.Names(), ", ")))
	}
	if err := models.CheckConfig(spec.Model, models.Config{Shortcut: spec.Shortcut, ZeroInitResidual: spec.ZeroInitResidual}); err != nil {
		errs = append(errs, fmt.Errorf("model options (shortcut, zero_init_residual): %w", err))
	}
	if err := dataset.CheckName(spec.Dataset); err != nil {
		errs = append(errs, fmt.Errorf("dataset: %w", err))
	}
	if err := models.CheckOptimizer(spec.Optimizer.Name); err != nil {
		errs = append(errs, fmt.Errorf("optimizer.name: %w", err))
	}
	if err := allreduce.CheckGradientCodec(codecName(spec)); err != nil {
		errs = append(errs, fmt.Errorf("codec: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	return nil
}

// gradientCodec returns the element codec gradients travel in: the job's
// (fp32 when it names none, and for PowerSGD, whose factors travel in
// fp32), decoding frames of at most maxFrameBytes bytes. A codec that is
// an io.Closer must be closed after use.
func gradientCodec(spec job.Spec, maxFrameBytes int) (allreduce.Codec, error) {
	name := codecName(spec)
	if _, ok := allreduce.PowerSGDRank(name); ok {
		name = "fp32"
	}
	c, err := allreduce.NewCodec(name, maxFrameBytes)
	if err != nil {
		return nil, fmt.Errorf("job: codec: %w", err)
	}
	return c, nil
}

// codecName is the job's gradient codec: fp32 when it names none.
func codecName(spec job.Spec) string { return cmp.Or(spec.Codec, "fp32") }
