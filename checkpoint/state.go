package checkpoint

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/safetensors"
)

// The files of a training state. A ring of W > 1 ranks shards the model and
// optimizer files as model-0000r-of-0000W.safetensors (rank r-1 of W; the
// Hugging Face naming of sharded checkpoints); codec files are always named
// so, one whole file per rank (see CodecFile).
const (
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
	codecFile     = "codec.safetensors"
)

// Tensor is one named float32 tensor of a training state.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// State is what a checkpoint holds of a training run.
//
// Names are unique within a file: Params and Buffers share the model
// file's names, Optimizer and Codec have names of their own.
type State struct {
	Model           string   // the model's zoo name (model file metadata "model"; also "format": "pt")
	Params, Buffers []Tensor // model.safetensors: PyTorch state_dict names
	// Counters are integers of the model's state (BatchNorm's
	// num_batches_tracked), written to model.safetensors as I64 scalars so
	// that PyTorch loads the file with strict=True. They are derived (the
	// engine knows how many batches the model has seen), so ReadState
	// does not read them back.
	Counters       []Counter
	OptimizerSteps int64    // optimizer.safetensors metadata "steps"
	Optimizer      []Tensor // optimizer.safetensors
	// Codec is rank-local state of the gradient codec (PowerSGD's error
	// feedback and warm-start factors). Each rank writes its own whole file
	// codec-0000r-of-0000W.safetensors (rank r+1 of W), never dealt out; absent when empty.
	Codec []Tensor
}

// Counter is one named integer of a model's state.
type Counter struct {
	Name  string
	Value int64
}

// CodecFile is the name of the codec file of rank (0-based) of a ring of
// world ranks, e.g. codec-00002-of-00004.safetensors for rank 1 of 4.
func CodecFile(rank, world int) string { return shardFileName(codecFile, rank, world) }

// Parts returns the files rank (of world ranks) writes for st: with world 1,
// model.safetensors and optimizer.safetensors (+ codec-00001-of-00001.safetensors if Codec is non-empty);
// with world > 1, the tensors of each of the two files are dealt round-robin in name order
// and rank r writes model-0000{r+1}-of-0000{world}.safetensors etc. (Hugging Face naming), plus its own codec file.
// Every rank's parts carry the same metadata.
//
// With world > 1 every rank writes both files, also one that is dealt no
// tensor, so that each file's metadata is found on every rank's share.
// Params and Buffers keep their Shape; Optimizer tensors are written 1-D,
// of their length; Codec tensors keep their Shape, or are 1-D when it is nil. The tensors' data is copied: st may change
// once Parts returns. A tensor whose Shape does not hold len(Data) values
// makes the writing of its part fail (safetensors refuses it). A rank
// outside [0, world) or a name used twice within a file is a programmer
// error and panics.
func (st State) Parts(rank, world int) []Part {
	if world < 1 || rank < 0 || rank >= world {
		panic(fmt.Sprintf("checkpoint: Parts: rank %d of a ring of %d", rank, world))
	}
	model := make(map[string]safetensors.Tensor, len(st.Params)+len(st.Buffers))
	add(model, ModelFile, st.Params, asShaped)
	add(model, ModelFile, st.Buffers, asShaped)
	for _, c := range st.Counters {
		if _, dup := model[c.Name]; dup {
			panic(fmt.Sprintf("checkpoint: Parts: tensor %q twice in %s", c.Name, ModelFile))
		}
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, uint64(c.Value))
		model[c.Name] = safetensors.Tensor{DType: "I64", Shape: []int{}, Data: b}
	}
	opt := make(map[string]safetensors.Tensor, len(st.Optimizer))
	add(opt, OptimizerFile, st.Optimizer, flat)
	parts := []Part{
		{Name: ModelFile, Tensors: model, Metadata: map[string]string{"model": st.Model, "format": "pt"}},
		{Name: OptimizerFile, Tensors: opt, Metadata: map[string]string{"steps": strconv.FormatInt(st.OptimizerSteps, 10)}},
	}
	if world > 1 {
		for i, p := range parts {
			names := slices.Sorted(maps.Keys(p.Tensors))
			mine := make(map[string]safetensors.Tensor, len(names)/world+1)
			for j := rank; j < len(names); j += world {
				mine[names[j]] = p.Tensors[names[j]]
			}
			parts[i] = Part{Name: shardFileName(p.Name, rank, world), Tensors: mine, Metadata: p.Metadata}
		}
	}
	if len(st.Codec) > 0 {
		codec := make(map[string]safetensors.Tensor, len(st.Codec))
		add(codec, codecFile, st.Codec, anyShape)
		parts = append(parts, Part{Name: CodecFile(rank, world), Tensors: codec})
	}
	return parts
}

// shapeRule says how the tensors of a file are shaped.
type shapeRule int

const (
	asShaped shapeRule = iota // as Shape says
	flat                      // 1-D, of their length
	anyShape                  // written as Shape says (1-D if nil), read by length
)

// shape is the shape t is written with under rule.
func (rule shapeRule) shape(t Tensor) []int {
	if rule == flat || (rule == anyShape && t.Shape == nil) {
		return []int{len(t.Data)}
	}
	return t.Shape
}

// add puts ts into the tensors of file.
func add(dst map[string]safetensors.Tensor, file string, ts []Tensor, rule shapeRule) {
	for _, t := range ts {
		if _, dup := dst[t.Name]; dup {
			panic(fmt.Sprintf("checkpoint: Parts: tensor %q twice in %s", t.Name, file))
		}
		dst[t.Name] = f32(rule.shape(t), t.Data)
	}
}

// f32 encodes data as an F32 tensor of shape. Unlike safetensors.F32 it
// does not panic when shape does not hold len(data) values: writing the
// tensor reports that as an error.
func f32(shape []int, data []float32) safetensors.Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return safetensors.Tensor{DType: "F32", Shape: slices.Clone(shape), Data: b}
}

// shardFileName names rank's (0-based) share of file in a ring of world
// ranks: model.safetensors → model-00002-of-00003.safetensors for rank 1.
func shardFileName(file string, rank, world int) string {
	return fmt.Sprintf("%s-%05d-of-%05d.safetensors", strings.TrimSuffix(file, ".safetensors"), rank+1, world)
}

// parseShardFileName is the inverse of shardFileName for the files of
// file: it returns the 0-based rank and the world of name.
func parseShardFileName(file, name string) (rank, world int, ok bool) {
	rest, ok := strings.CutPrefix(name, strings.TrimSuffix(file, ".safetensors")+"-")
	if !ok {
		return 0, 0, false
	}
	rest, ok = strings.CutSuffix(rest, ".safetensors")
	if !ok {
		return 0, 0, false
	}
	r, w, ok := strings.Cut(rest, "-of-")
	if !ok || !allDigits(r) || !allDigits(w) {
		return 0, 0, false
	}
	rank, err1 := strconv.Atoi(r)
	world, err2 := strconv.Atoi(w)
	if err1 != nil || err2 != nil || rank < 1 || rank > world {
		return 0, 0, false
	}
	return rank - 1, world, true
}

// isFileOf reports whether name is file itself or one of its shards.
func isFileOf(file, name string) bool {
	_, _, ok := parseShardFileName(file, name)
	return ok || name == file
}

func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// ReadState copies the tensors of ck (whole or sharded files) into dst's
// Data slices, matched by name: every tensor in dst.Params, dst.Buffers and
// dst.Optimizer must be present with the same shape (Optimizer tensors are 1-D by length);
// extra tensors in the checkpoint's optimizer file that dst lacks are an error too (the optimizer differs).
// It returns the optimizer step count. Errors name the checkpoint, the file and the tensor.
// A tensor found in two files is an error.
//
// The checkpoint's model files may hold tensors dst lacks (they are not
// read); its codec files are not read (see ReadCodecState). dst.Model and
// dst.Codec are ignored. On an error nothing of dst is changed. dst's Data
// slices must be as long as their Shape says (for Optimizer tensors, the
// length is the shape).
func (ck *Checkpoint) ReadState(dst State) (optimizerSteps int64, err error) {
	model, err := ck.gather(ModelFile)
	if err != nil {
		return 0, err
	}
	opt, err := ck.gather(OptimizerFile)
	if err != nil {
		return 0, err
	}
	steps, err := ck.optimizerSteps(opt)
	if err != nil {
		return 0, err
	}
	var copies []pendingCopy
	for _, ts := range [][]Tensor{dst.Params, dst.Buffers} {
		cs, err := ck.match(model, ts, asShaped, false)
		if err != nil {
			return 0, err
		}
		copies = append(copies, cs...)
	}
	cs, err := ck.match(opt, dst.Optimizer, flat, true)
	if err != nil {
		return 0, err
	}
	copies = append(copies, cs...)
	if err := ck.apply(copies); err != nil {
		return 0, err
	}
	return steps, nil
}

// ReadCodecState copies rank's codec file of a checkpoint written by world
// ranks into dst (matched by name and length). found is false when the checkpoint has
// no codec files, or was written by another world size (the caller then starts the codec afresh).
//
// As with the optimizer, a tensor of the file that dst lacks is an error
// (the codec differs), and so is a checkpoint with codec files of world
// ranks but none for rank: the ranks' codec states would disagree. On an
// error nothing of dst is changed.
func (ck *Checkpoint) ReadCodecState(rank, world int, dst []Tensor) (found bool, err error) {
	if world < 1 || rank < 0 || rank >= world {
		return false, fmt.Errorf("checkpoint: %s: codec state of rank %d of a ring of %d", ck.Manifest.Name, rank, world)
	}
	sameWorld := false
	for name := range ck.Files {
		if _, w, ok := parseShardFileName(codecFile, name); ok && w == world {
			sameWorld = true
		}
	}
	if !sameWorld {
		return false, nil
	}
	name := CodecFile(rank, world)
	f, ok := ck.Files[name]
	if !ok {
		return false, fmt.Errorf("checkpoint: %s has codec files of %d ranks but no %s", ck.Manifest.Name, world, name)
	}
	ts := make(map[string]located, f.Len())
	for _, tn := range f.Names() {
		t, _ := f.Tensor(tn)
		ts[tn] = located{file: name, t: t}
	}
	copies, err := ck.match(fileSet{file: codecFile, files: []string{name}, tensors: ts}, dst, anyShape, true)
	if err != nil {
		return false, err
	}
	if err := ck.apply(copies); err != nil {
		return false, err
	}
	return true, nil
}

// located is a tensor of a checkpoint and the file that holds it.
type located struct {
	file string
	t    safetensors.Tensor
}

// fileSet is the tensors of one of a checkpoint's files, whole or gathered
// from its shards.
type fileSet struct {
	file    string   // the whole file's name, e.g. model.safetensors
	files   []string // the names of the files read, sorted
	tensors map[string]located
}

// describe names the set in errors: the file read, or the pattern of the
// shards.
func (fs fileSet) describe() string {
	if len(fs.files) == 1 {
		return fs.files[0]
	}
	return strings.TrimSuffix(fs.file, ".safetensors") + "-*.safetensors"
}

// gather collects the tensors of ck's file (model.safetensors) or of its
// shards (model-00001-of-00004.safetensors, …). A tensor found in two
// files is an error.
func (ck *Checkpoint) gather(file string) (fileSet, error) {
	fs := fileSet{file: file}
	for name := range ck.Files {
		if isFileOf(file, name) {
			fs.files = append(fs.files, name)
		}
	}
	if len(fs.files) == 0 {
		return fs, fmt.Errorf("checkpoint: %s has no %s", ck.Manifest.Name, file)
	}
	slices.Sort(fs.files)
	fs.tensors = make(map[string]located)
	for _, name := range fs.files {
		f := ck.Files[name]
		for _, tn := range f.Names() {
			if prev, dup := fs.tensors[tn]; dup {
				return fs, fmt.Errorf("checkpoint: %s: tensor %q appears in two files: both %s and %s hold it", ck.Manifest.Name, tn, prev.file, name)
			}
			t, _ := f.Tensor(tn)
			fs.tensors[tn] = located{file: name, t: t}
		}
	}
	return fs, nil
}

// optimizerSteps reads the step count of the optimizer files, which must
// agree.
func (ck *Checkpoint) optimizerSteps(opt fileSet) (int64, error) {
	first := ck.Files[opt.files[0]].Metadata["steps"]
	for _, name := range opt.files[1:] {
		if s := ck.Files[name].Metadata["steps"]; s != first {
			return 0, fmt.Errorf("checkpoint: %s: %s says %q optimizer steps, %s %q", ck.Manifest.Name, opt.files[0], first, name, s)
		}
	}
	steps, err := strconv.ParseInt(first, 10, 64)
	if err != nil || steps < 0 {
		return 0, fmt.Errorf("checkpoint: %s: %s: bad step count %q", ck.Manifest.Name, opt.files[0], first)
	}
	return steps, nil
}

// pendingCopy is a checked tensor of a checkpoint and where it goes.
type pendingCopy struct {
	dst []float32
	src located
	tn  string
}

// match pairs each tensor of want with its namesake in fs, checking its
// shape under rule, its dtype and its size. With exhaustive, fs may hold
// no tensor that want lacks.
func (ck *Checkpoint) match(fs fileSet, want []Tensor, rule shapeRule, exhaustive bool) ([]pendingCopy, error) {
	copies := make([]pendingCopy, 0, len(want))
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w.Name] = true
		src, ok := fs.tensors[w.Name]
		if !ok {
			return nil, fmt.Errorf("checkpoint: %s: %s lacks tensor %q", ck.Manifest.Name, fs.describe(), w.Name)
		}
		if shape := rule.shape(w); rule != anyShape && !slices.Equal(src.t.Shape, shape) {
			return nil, fmt.Errorf("checkpoint: %s: %s: tensor %q has shape %v, want %v", ck.Manifest.Name, src.file, w.Name, src.t.Shape, shape)
		}
		n, err := src.t.NumElements()
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: %s: tensor %q: %w", ck.Manifest.Name, src.file, w.Name, err)
		}
		if n != len(w.Data) {
			return nil, fmt.Errorf("checkpoint: %s: %s: tensor %q has %d values (shape %v), want %d", ck.Manifest.Name, src.file, w.Name, n, src.t.Shape, len(w.Data))
		}
		if size, ok := safetensors.DTypeSize(src.t.DType); !ok || (src.t.DType != "F32" && src.t.DType != "F64") || len(src.t.Data) != n*size {
			return nil, fmt.Errorf("checkpoint: %s: %s: tensor %q: a %s tensor of %d bytes cannot be read as %d float32 values", ck.Manifest.Name, src.file, w.Name, src.t.DType, len(src.t.Data), n)
		}
		copies = append(copies, pendingCopy{dst: w.Data, src: src, tn: w.Name})
	}
	if exhaustive {
		for _, tn := range slices.Sorted(maps.Keys(fs.tensors)) {
			if !wanted[tn] {
				return nil, fmt.Errorf("checkpoint: %s: %s: tensor %q is not in the state being restored (it was written by another configuration)", ck.Manifest.Name, fs.tensors[tn].file, tn)
			}
		}
	}
	return copies, nil
}

// apply decodes the checked tensors into their destinations.
func (ck *Checkpoint) apply(copies []pendingCopy) error {
	for _, c := range copies {
		xs, err := c.src.t.Float32s()
		if err != nil { // match checked what Float32s checks
			return fmt.Errorf("checkpoint: %s: %s: tensor %q: %w", ck.Manifest.Name, c.src.file, c.tn, err)
		}
		copy(c.dst, xs)
	}
	return nil
}
