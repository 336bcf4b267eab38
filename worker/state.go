package worker

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

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

// shardParts is rank's share of the checkpoint files of a ring of world
// ranks: the tensors of each of stateParts' files are dealt round-robin, in
// name order, and rank r writes them as e.g. model-0000{r+1}-of-0000{world}.safetensors
// (the Hugging Face naming of sharded checkpoints), so the ranks write in
// parallel and every tensor is written once.
func shardParts(model *models.Model, opt models.Optimizer, rank, world int) []checkpoint.Part {
	parts := stateParts(model, opt)
	for i, p := range parts {
		names := slices.Sorted(maps.Keys(p.Tensors))
		mine := make(map[string]safetensors.Tensor)
		for j := rank; j < len(names); j += world {
			mine[names[j]] = p.Tensors[names[j]]
		}
		base := strings.TrimSuffix(p.Name, ".safetensors")
		parts[i] = checkpoint.Part{
			Name:     fmt.Sprintf("%s-%05d-of-%05d.safetensors", base, rank+1, world),
			Tensors:  mine,
			Metadata: p.Metadata,
		}
	}
	return parts
}

// checkpointFiles gathers the tensors of a checkpoint's files named base
// (model.safetensors) or sharded from it (model-00001-of-00004.safetensors),
// and the first such file's metadata. A tensor found twice is an error.
func checkpointFiles(ck *checkpoint.Checkpoint, base string) (map[string]safetensors.Tensor, map[string]string, error) {
	stem := strings.TrimSuffix(base, ".safetensors")
	var names []string
	for name := range ck.Files {
		if name == base || (strings.HasPrefix(name, stem+"-") && strings.HasSuffix(name, ".safetensors")) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("worker: checkpoint %s has no %s", ck.Manifest.Name, base)
	}
	slices.Sort(names)
	tensors := make(map[string]safetensors.Tensor)
	var meta map[string]string
	for _, name := range names {
		f := ck.Files[name]
		if meta == nil {
			meta = f.Metadata
		}
		for _, tn := range f.Names() {
			if _, dup := tensors[tn]; dup {
				return nil, nil, fmt.Errorf("worker: checkpoint %s: tensor %s appears in two files", ck.Manifest.Name, tn)
			}
			tensors[tn], _ = f.Tensor(tn)
		}
	}
	return tensors, meta, nil
}

// restore loads a checkpoint's state into the model and optimizer and
// returns the sampler positioned where the checkpoint left off.
func restore(ck *checkpoint.Checkpoint, spec job.Spec, model *models.Model, opt models.Optimizer, n int) (*dataset.Sampler, error) {
	m := ck.Manifest
	if err := restoreState(ck, spec, model, opt); err != nil {
		return nil, err
	}
	s, err := dataset.NewSamplerFromState(n, dataset.SamplerState{Seed: m.Seed, Epoch: m.Epoch, Position: m.Position}, true)
	if err != nil {
		return nil, fmt.Errorf("worker: checkpoint %s: %w", m.Name, err)
	}
	return s, nil
}

// restoreState loads a checkpoint's parameters, buffers and optimizer state,
// from whole or sharded files, checking the job hash, every name and shape.
func restoreState(ck *checkpoint.Checkpoint, spec job.Spec, model *models.Model, opt models.Optimizer) error {
	m := ck.Manifest
	if m.JobHash != spec.Hash() {
		return fmt.Errorf("worker: checkpoint %s belongs to another job (hash %s, this job %s): the model, data set or hyper-parameters differ", m.Name, m.JobHash, spec.Hash())
	}
	if err := loadModel(ck, model); err != nil {
		return err
	}
	ot, meta, err := checkpointFiles(ck, optimizerFile)
	if err != nil {
		return err
	}
	steps, err := strconv.ParseInt(meta["steps"], 10, 64)
	if err != nil {
		return fmt.Errorf("worker: checkpoint %s: %s: bad step count %q", m.Name, optimizerFile, meta["steps"])
	}
	var state []models.NamedSlice
	for _, name := range slices.Sorted(maps.Keys(ot)) {
		xs, err := ot[name].Float32s()
		if err != nil {
			return fmt.Errorf("worker: checkpoint %s: %s: %s: %w", m.Name, optimizerFile, name, err)
		}
		state = append(state, models.NamedSlice{Name: name, Data: xs})
	}
	if err := opt.LoadState(steps, state); err != nil {
		return fmt.Errorf("worker: checkpoint %s: %w", m.Name, err)
	}
	return nil
}

// loadModel copies a checkpoint's parameters and buffers into the model,
// checking every name and shape.
func loadModel(ck *checkpoint.Checkpoint, model *models.Model) error {
	tensors, _, err := checkpointFiles(ck, modelFile)
	if err != nil {
		return err
	}
	a := model.Arena
	load := func(infos []models.ParamInfo, flat []float32) error {
		for _, p := range infos {
			t, ok := tensors[p.Name]
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
