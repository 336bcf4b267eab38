package checkpoint

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/safetensors"
)

// Merged returns the tensors of the checkpoint's file base (e.g.
// ModelFile), whether it was written whole or in shards
// (base's stem-0000r-of-0000w.safetensors), and the metadata of the first
// of those files in name order. A tensor found in two files is an error.
func (ck *Checkpoint) Merged(base string) (map[string]safetensors.Tensor, map[string]string, error) {
	names := filesOf(ck.Manifest, base)
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("checkpoint: %s has no %s", ck.Manifest.Name, base)
	}
	tensors := make(map[string]safetensors.Tensor)
	var meta map[string]string
	for _, name := range names {
		f := ck.Files[name]
		if f == nil {
			return nil, nil, fmt.Errorf("checkpoint: %s: %s is not loaded", ck.Manifest.Name, name)
		}
		if meta == nil {
			meta = f.Metadata
		}
		for _, tn := range f.Names() {
			if _, dup := tensors[tn]; dup {
				return nil, nil, fmt.Errorf("checkpoint: %s: tensor %s appears in two files", ck.Manifest.Name, tn)
			}
			tensors[tn], _ = f.Tensor(tn)
		}
	}
	return tensors, meta, nil
}

// filesOf returns the names of m's files that are base or its shards,
// sorted.
func filesOf(m Manifest, base string) []string {
	stem := strings.TrimSuffix(base, ".safetensors")
	var names []string
	for _, f := range m.Files {
		if f.Name == base || (strings.HasPrefix(f.Name, stem+"-") && strings.HasSuffix(f.Name, ".safetensors")) {
			names = append(names, f.Name)
		}
	}
	slices.Sort(names)
	return names
}

// ExportModel writes the model of checkpoint name as one safetensors file
// at path, atomically: its ModelFile, or the ranks' shards of it merged,
// every tensor under its state_dict name, so that PyTorch loads it with
// safetensors.torch.load_file. The checkpoint's model files are verified
// against the manifest first; its other files are not read.
func (s *Store) ExportModel(name, path string) error {
	m, err := s.ReadManifest(name)
	if err != nil {
		return err
	}
	ck := &Checkpoint{Manifest: m, Files: make(map[string]*safetensors.File)}
	model := filesOf(m, ModelFile)
	for _, fi := range m.Files {
		if !slices.Contains(model, fi.Name) {
			continue
		}
		p := filepath.Join(s.dir, name, fi.Name)
		if err := verifyFile(p, fi); err != nil {
			return err
		}
		f, err := safetensors.ReadFile(p)
		if err != nil {
			return fmt.Errorf("checkpoint: %s: %w", name, err)
		}
		ck.Files[fi.Name] = f
	}
	tensors, meta, err := ck.Merged(ModelFile)
	if err != nil {
		return err
	}
	if err := safetensors.WriteFile(path, tensors, meta); err != nil {
		return fmt.Errorf("checkpoint: exporting the model of %s: %w", name, err)
	}
	return nil
}
