package worker

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/safetensors"
)

// Checkpoint files: the model's parameters and buffers (named as in the
// arena, PyTorch state_dict style) and the optimizer's state.
const (
	modelFile     = "model.safetensors"
	optimizerFile = "optimizer.safetensors"
)

// checkpoint writes and commits the run's state at the current step, then
// applies retention.
func (l *loop) checkpoint() error {
	if l.lastCheckpoint == checkpoint.NameForStep(l.step) {
		return nil // nothing new since the last one
	}
	st := l.sampler.State()
	m := checkpoint.Manifest{
		JobHash: l.spec.Hash(), Model: l.spec.Model,
		Step: l.step, Epoch: st.Epoch, Position: st.Position, Seed: st.Seed,
		WorldSize: 1,
		Metrics:   checkpoint.Metrics{TrainLoss: l.trainLoss, TestAccuracy: l.lastEval.Accuracy, TestLoss: l.lastEval.Loss},
	}
	m, err := l.store.Save(m, stateParts(l.model, l.opt))
	if err != nil {
		return err
	}
	l.lastCheckpoint = m.Name
	return l.store.Retain(l.spec.KeepCheckpoints)
}

func stateParts(model *models.Model, opt models.Optimizer) []checkpoint.Part {
	a := model.Arena
	mt := make(map[string]safetensors.Tensor, len(a.Params)+len(a.BufferInfo))
	for _, p := range a.Params {
		mt[p.Name] = safetensors.F32(p.Shape, a.Data[p.Offset:p.Offset+p.Len()])
	}
	for _, p := range a.BufferInfo {
		mt[p.Name] = safetensors.F32(p.Shape, a.Buffers[p.Offset:p.Offset+p.Len()])
	}
	ot := make(map[string]safetensors.Tensor)
	for _, s := range opt.State() {
		ot[s.Name] = safetensors.F32([]int{len(s.Data)}, s.Data)
	}
	return []checkpoint.Part{
		{Name: modelFile, Tensors: mt, Metadata: map[string]string{"model": model.Name, "format": "pt"}},
		{Name: optimizerFile, Tensors: ot, Metadata: map[string]string{"steps": strconv.FormatInt(opt.Steps(), 10)}},
	}
}

// restore loads a checkpoint's state into the model and optimizer and
// returns the sampler positioned where the checkpoint left off.
func restore(ck *checkpoint.Checkpoint, spec job.Spec, model *models.Model, opt models.Optimizer, n int) (*dataset.Sampler, error) {
	m := ck.Manifest
	if m.JobHash != spec.Hash() {
		return nil, fmt.Errorf("worker: checkpoint %s belongs to another job (hash %s, this job %s): the model, data set or hyper-parameters differ", m.Name, m.JobHash, spec.Hash())
	}
	if err := loadModel(ck, model); err != nil {
		return nil, err
	}
	of, ok := ck.Files[optimizerFile]
	if !ok {
		return nil, fmt.Errorf("worker: checkpoint %s has no %s", m.Name, optimizerFile)
	}
	steps, err := strconv.ParseInt(of.Metadata["steps"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("worker: checkpoint %s: %s: bad step count %q", m.Name, optimizerFile, of.Metadata["steps"])
	}
	var state []models.NamedSlice
	for _, name := range of.Names() {
		t, _ := of.Tensor(name)
		xs, err := t.Float32s()
		if err != nil {
			return nil, fmt.Errorf("worker: checkpoint %s: %s: %s: %w", m.Name, optimizerFile, name, err)
		}
		state = append(state, models.NamedSlice{Name: name, Data: xs})
	}
	if err := opt.LoadState(steps, state); err != nil {
		return nil, fmt.Errorf("worker: checkpoint %s: %w", m.Name, err)
	}
	s, err := dataset.NewSamplerFromState(n, dataset.SamplerState{Seed: m.Seed, Epoch: m.Epoch, Position: m.Position}, true)
	if err != nil {
		return nil, fmt.Errorf("worker: checkpoint %s: %w", m.Name, err)
	}
	return s, nil
}

// loadModel copies a checkpoint's parameters and buffers into the model,
// checking every name and shape.
func loadModel(ck *checkpoint.Checkpoint, model *models.Model) error {
	f, ok := ck.Files[modelFile]
	if !ok {
		return fmt.Errorf("worker: checkpoint %s has no %s", ck.Manifest.Name, modelFile)
	}
	a := model.Arena
	load := func(infos []models.ParamInfo, flat []float32) error {
		for _, p := range infos {
			t, ok := f.Tensor(p.Name)
			if !ok {
				return fmt.Errorf("worker: checkpoint %s: %s lacks %s", ck.Manifest.Name, modelFile, p.Name)
			}
			if !slices.Equal(t.Shape, p.Shape) {
				return fmt.Errorf("worker: checkpoint %s: %s has shape %v, the model %v", ck.Manifest.Name, p.Name, t.Shape, p.Shape)
			}
			xs, err := t.Float32s()
			if err != nil {
				return fmt.Errorf("worker: checkpoint %s: %s: %w", ck.Manifest.Name, p.Name, err)
			}
			copy(flat[p.Offset:p.Offset+p.Len()], xs)
		}
		return nil
	}
	if err := load(a.Params, a.Data); err != nil {
		return err
	}
	return load(a.BufferInfo, a.Buffers)
}
