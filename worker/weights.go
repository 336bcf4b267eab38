package worker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/safetensors"
)

// ModelState is m's state as a checkpoint's model file holds it: its
// parameters and buffers (views of the arena) under their state_dict names,
// and its counters at batches (BatchNorm's num_batches_tracked).
func ModelState(m *models.Model, batches int64) checkpoint.State {
	a := m.Arena
	st := checkpoint.State{Model: m.Name}
	for _, p := range a.Params {
		st.Params = append(st.Params, checkpoint.Tensor{Name: p.Name, Shape: p.Shape, Data: a.Data[p.Offset : p.Offset+p.Len()]})
	}
	for _, p := range a.BufferInfo {
		st.Buffers = append(st.Buffers, checkpoint.Tensor{Name: p.Name, Shape: p.Shape, Data: a.Buffers[p.Offset : p.Offset+p.Len()]})
	}
	for _, name := range a.Counters {
		st.Counters = append(st.Counters, checkpoint.Counter{Name: name, Value: batches})
	}
	return st
}

// WriteModel writes m's state (ModelState) to a safetensors file at path,
// atomically: the file PyTorch's safetensors.torch.load_file reads and a
// torchvision model of the same name loads with strict=True.
func WriteModel(m *models.Model, batches int64, path string) error {
	part := ModelState(m, batches).Parts(0, 1)[0]
	if err := safetensors.WriteFile(path, part.Tensors, part.Metadata); err != nil {
		return fmt.Errorf("worker: writing %s's weights: %w", m.Name, err)
	}
	return nil
}

// LoadReport says what LoadWeights did besides loading.
type LoadReport struct {
	// NewHead lists the parameters of the model's last layer that kept
	// their fresh initialization because the file's differ in shape (it
	// was trained for another number of classes).
	NewHead []string
}

// LoadWeights sets m's parameters and buffers from the safetensors file at
// path by their state_dict names: a file PyTorch wrote (a torchvision
// model's state_dict through safetensors), a ringtrain checkpoint's model
// file or an export. Every parameter and buffer must be in the file with
// its shape, F32 or F64, with one exception: where the parameters of the
// model's last layer (its head, whose width is the class count) have
// another shape in the file, they keep their fresh initialization, as when
// fine-tuning on a data set with other classes, and the report names them.
// Integer tensors (num_batches_tracked) are skipped; any other tensor of
// the file that m lacks is an error, as in PyTorch's strict loading.
// Nothing of m changes on an error.
func LoadWeights(m *models.Model, path string) (LoadReport, error) {
	var rep LoadReport
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return rep, fmt.Errorf("worker: weights %s: %w", path, err)
	}
	a := m.Arena
	head := headPrefix(a)
	type load struct {
		dst []float32
		src safetensors.Tensor
	}
	var loads []load
	used := map[string]bool{}
	take := func(infos []models.ParamInfo, flat []float32) error {
		for _, p := range infos {
			t, ok := f.Tensor(p.Name)
			if !ok {
				return fmt.Errorf("worker: weights %s lack %q (%v), which model %s has", path, p.Name, p.Shape, m.Name)
			}
			used[p.Name] = true
			if !slices.Equal(t.Shape, p.Shape) {
				if head != "" && strings.HasPrefix(p.Name, head) {
					rep.NewHead = append(rep.NewHead, p.Name)
					continue
				}
				return fmt.Errorf("worker: weights %s: %q has shape %v; model %s wants %v", path, p.Name, t.Shape, m.Name, p.Shape)
			}
			if t.DType != "F32" && t.DType != "F64" {
				return fmt.Errorf("worker: weights %s: %q is %s; want F32 or F64", path, p.Name, t.DType)
			}
			loads = append(loads, load{flat[p.Offset : p.Offset+p.Len()], t})
		}
		return nil
	}
	if err := take(a.Params, a.Data); err != nil {
		return LoadReport{}, err
	}
	if err := take(a.BufferInfo, a.Buffers); err != nil {
		return LoadReport{}, err
	}
	var extra []string
	for _, name := range f.Names() {
		if t, _ := f.Tensor(name); !used[name] && t.DType != "I64" && t.DType != "I32" {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		return LoadReport{}, fmt.Errorf("worker: weights %s hold %d tensors model %s lacks: %s", path, len(extra), m.Name, strings.Join(first(extra, 5), ", "))
	}
	if len(rep.NewHead) > 0 && len(rep.NewHead) != countPrefix(a, head) {
		return LoadReport{}, fmt.Errorf("worker: weights %s: only part of model %s's head %s differs in shape (%s)", path, m.Name, strings.TrimSuffix(head, "."), strings.Join(rep.NewHead, ", "))
	}
	decoded := make([][]float32, len(loads))
	for i, l := range loads {
		if decoded[i], err = l.src.Float32s(); err != nil {
			return LoadReport{}, fmt.Errorf("worker: weights %s: %w", path, err)
		}
	}
	for i, l := range loads {
		copy(l.dst, decoded[i])
	}
	return rep, nil
}

// headPrefix is the name prefix ("fc.", "classifier.6.") of the layer that
// holds the model's last parameter, or "" for a model without parameters.
func headPrefix(a *models.Arena) string {
	if len(a.Params) == 0 {
		return ""
	}
	last := a.Params[len(a.Params)-1].Name
	i := strings.LastIndexByte(last, '.')
	if i < 0 {
		return last
	}
	return last[:i+1]
}

func countPrefix(a *models.Arena, prefix string) int {
	n := 0
	for _, p := range a.Params {
		if strings.HasPrefix(p.Name, prefix) {
			n++
		}
	}
	return n
}

// first returns the first n of names, sorted, and "…" when there are more.
func first(names []string, n int) []string {
	names = slices.Sorted(slices.Values(names))
	if len(names) > n {
		return append(names[:n:n], "…")
	}
	return names
}
