package checkpoint

import (
	"fmt"
	"path/filepath"

	"github.com/ringtrain/ringtrain/safetensors"
)

// Merged returns the tensors of the checkpoint's file base (e.g.
// ModelFile), whether it was written whole or in shards
// (base's stem-0000r-of-0000w.safetensors), and the metadata of the first
// of those files in name order. A tensor found in two files is an error.
func (ck *Checkpoint) Merged(base string) (map[string]safetensors.Tensor, map[string]string, error) {
	fs, err := ck.gather(base)
	if err != nil {
		return nil, nil, err
	}
	tensors := make(map[string]safetensors.Tensor, len(fs.tensors))
	for tn, l := range fs.tensors {
		tensors[tn] = l.t
	}
	return tensors, ck.Files[fs.files[0]].Metadata, nil
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
	for _, fi := range m.Files {
		if !isFileOf(ModelFile, fi.Name) {
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
