package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	lenet5Path    = "../testdata/lenet5.safetensors"
	lenet5F32Path = "../testdata/lenet5_f32.safetensors"
	opsPath       = "../testdata/ops.safetensors"
)

var lenetParamShapes = map[string][]int{
	"c1.weight": {6, 1, 5, 5}, "c1.bias": {6},
	"c2.weight": {16, 6, 5, 5}, "c2.bias": {16},
	"f1.weight": {120, 400}, "f1.bias": {120},
	"f2.weight": {84, 120}, "f2.bias": {84},
	"f3.weight": {10, 84}, "f3.bias": {10},
}

func mustRead(t *testing.T, path string) *File {
	t.Helper()
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustTensor(t *testing.T, f *File, name string) Tensor {
	t.Helper()
	x, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("tensor %q missing", name)
	}
	return x
}

func TestReadLeNet5Golden(t *testing.T) {
	f := mustRead(t, lenet5Path)
	if got := f.Len(); got != 34 {
		t.Errorf("Len = %d, want 34", got)
	}
	names := f.Names()
	if !sortedStrings(names) {
		t.Errorf("Names not sorted: %v", names)
	}
	for _, k := range []string{"model", "input", "sgd"} {
		if _, ok := f.Metadata[k]; !ok {
			t.Errorf("metadata %q missing (have %v)", k, f.Metadata)
		}
	}
	loss, err := mustTensor(t, f, "loss").Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(loss) != 1 || loss[0] != 2.2853764050106866 {
		t.Errorf("loss = %v, want [2.2853764050106866]", loss)
	}
	for p, shape := range lenetParamShapes {
		for _, prefix := range []string{"param.", "grad.", "after_sgd_step."} {
			x := mustTensor(t, f, prefix+p)
			if x.DType != "F64" || !reflect.DeepEqual(x.Shape, shape) {
				t.Errorf("%s%s: %s %v, want F64 %v", prefix, p, x.DType, x.Shape, shape)
			}
		}
	}
	if x := mustTensor(t, f, "input"); !reflect.DeepEqual(x.Shape, []int{8, 1, 28, 28}) {
		t.Errorf("input shape %v", x.Shape)
	}
	labels, err := mustTensor(t, f, "labels").Float64s()
	if err != nil {
		t.Fatal(err)
	}
	// The first eight MNIST test labels.
	if want := []float64{7, 2, 1, 0, 4, 1, 4, 9}; !reflect.DeepEqual(labels, want) {
		t.Errorf("labels = %v, want %v", labels, want)
	}
	if _, ok := f.Tensor("nope"); ok {
		t.Error("Tensor(nope) found")
	}
}

func TestF32CopyMatchesF64(t *testing.T) {
	f64 := mustRead(t, lenet5Path)
	f32 := mustRead(t, lenet5F32Path)
	if f32.Metadata != nil {
		t.Errorf("lenet5_f32 metadata = %v, want none", f32.Metadata)
	}
	if !reflect.DeepEqual(f32.Names(), f64.Names()) {
		t.Fatalf("names differ:\n%v\n%v", f32.Names(), f64.Names())
	}
	for _, name := range f32.Names() {
		a, b := mustTensor(t, f32, name), mustTensor(t, f64, name)
		if a.DType != "F32" || !reflect.DeepEqual(a.Shape, b.Shape) {
			t.Fatalf("%s: %s %v vs %s %v", name, a.DType, a.Shape, b.DType, b.Shape)
		}
		xa, err := a.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		xb, err := b.Float32s() // F64 rounded to float32
		if err != nil {
			t.Fatal(err)
		}
		for i := range xa {
			if xa[i] != xb[i] {
				t.Fatalf("%s[%d]: F32 file %v, F64 file rounded %v", name, i, xa[i], xb[i])
			}
		}
		wide, err := a.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		for i := range wide {
			if float64(xa[i]) != wide[i] {
				t.Fatalf("%s[%d]: Float64s of F32 %v != %v", name, i, wide[i], xa[i])
			}
		}
	}
}

func TestReadOpsGolden(t *testing.T) {
	f := mustRead(t, opsPath)
	var cases map[string]json.RawMessage
	if err := json.Unmarshal([]byte(f.Metadata["cases"]), &cases); err != nil {
		t.Fatalf("metadata cases: %v", err)
	}
	if len(cases) != 24 {
		t.Errorf("%d cases, want 24", len(cases))
	}
	in, err := mustTensor(t, f, "relu.in0").Float64s()
	if err != nil {
		t.Fatal(err)
	}
	out, err := mustTensor(t, f, "relu.out").Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != len(out) || len(in) == 0 {
		t.Fatalf("relu in %d, out %d values", len(in), len(out))
	}
	for i := range in {
		if want := math.Max(in[i], 0); out[i] != want {
			t.Fatalf("relu.out[%d] = %v, want %v", i, out[i], want)
		}
	}
}

// TestRewriteMatchesReference checks that rewriting a file written by the
// reference implementation (one dtype, no metadata) reproduces it byte for byte.
func TestRewriteMatchesReference(t *testing.T) {
	orig, err := os.ReadFile(lenet5F32Path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ReadBytes(orig)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, tensorsOf(f), f.Metadata); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), orig) {
		n := binary.LittleEndian.Uint64(orig)
		t.Errorf("rewrite differs from the reference file (%d vs %d bytes)\nours: %.200s\nref:  %.200s",
			buf.Len(), len(orig), buf.Bytes()[8:], orig[8:8+n])
	}
}

func tensorsOf(f *File) map[string]Tensor {
	m := map[string]Tensor{}
	for _, n := range f.Names() {
		m[n], _ = f.Tensor(n)
	}
	return m
}

func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func sampleTensors() map[string]Tensor {
	return map[string]Tensor{
		"w":      F32([]int{2, 3}, []float32{1, -2, 3.5, 0, float32(math.Inf(1)), -0.25}),
		"b":      F64([]int{3}, []float64{0.1, 0.2, math.Pi}),
		"scalar": F32([]int{}, []float32{42}),
		"empty":  F32([]int{0, 4}, nil),
		"ids":    {DType: "I64", Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
		"mask":   {DType: "U8", Shape: []int{3}, Data: []byte{1, 0, 1}},
		"half":   {DType: "BF16", Shape: []int{1}, Data: []byte{0x80, 0x3f}},
		"<&>\"":  F32([]int{1}, []float32{7}),
	}
}

func TestRoundTrip(t *testing.T) {
	in := sampleTensors()
	meta := map[string]string{"step": "12", "z": "last", "a": "<html> & \"quotes\""}
	var b1, b2 bytes.Buffer
	if err := Write(&b1, in, meta); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b2, in, meta); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatal("Write is not deterministic")
	}
	hlen := binary.LittleEndian.Uint64(b1.Bytes())
	if hlen%8 != 0 {
		t.Errorf("header length %d not a multiple of 8", hlen)
	}
	f, err := Read(bytes.NewReader(b1.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	if got, want := f.Names(), sortedNames(in); !reflect.DeepEqual(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	for name, want := range in {
		got := mustTensor(t, f, name)
		if got.DType != want.DType || !reflect.DeepEqual(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
		size, _ := DTypeSize(got.DType)
		start := cap(b1.Bytes()[8+hlen:]) - cap(got.Data) // offset of Data within the buffer
		if len(got.Data) > 0 && start%size != 0 {
			t.Errorf("%s: %s data at buffer offset %d, not aligned to %d", name, got.DType, start, size)
		}
	}
	// Data slices are capped: appending to one must not overwrite its neighbour.
	w := mustTensor(t, f, "w")
	_ = append(w.Data, 0xff)
	if x := mustTensor(t, f, "scalar"); !bytes.Equal(x.Data, in["scalar"].Data) {
		t.Error("append to one tensor's Data changed another")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	in := sampleTensors()
	if err := WriteFile(path, in, nil); err != nil {
		t.Fatal(err)
	}
	f := mustRead(t, path)
	if f.Metadata != nil {
		t.Errorf("metadata %v, want nil", f.Metadata)
	}
	if f.Len() != len(in) {
		t.Errorf("%d tensors, want %d", f.Len(), len(in))
	}
	// A data file others may read: the mode of a file created 0644.
	ref := filepath.Join(t.TempDir(), "ref")
	if err := os.WriteFile(ref, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := modeOf(t, path), modeOf(t, ref); got != want {
		t.Errorf("mode %v, want %v", got, want)
	}
	// A failing write leaves the old file and no temporary behind.
	bad := map[string]Tensor{"x": {DType: "F32", Shape: []int{2}, Data: []byte{1}}}
	if err := WriteFile(path, bad, nil); err == nil {
		t.Fatal("WriteFile of a bad tensor succeeded")
	}
	mustRead(t, path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after a failed write, want 1", len(ents))
	}
}

func modeOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestWriteRejects(t *testing.T) {
	cases := map[string]struct {
		tensors map[string]Tensor
		meta    map[string]string
		want    string
	}{
		"short data":    {map[string]Tensor{"x": {DType: "F32", Shape: []int{2}, Data: make([]byte, 7)}}, nil, "needs 8 bytes, has 7"},
		"unknown dtype": {map[string]Tensor{"x": {DType: "F31", Shape: []int{1}, Data: make([]byte, 4)}}, nil, `unknown dtype "F31"`},
		"negative dim":  {map[string]Tensor{"x": {DType: "U8", Shape: []int{-1}}}, nil, "negative dimension"},
		"overflow":      {map[string]Tensor{"x": {DType: "U8", Shape: []int{math.MaxInt, 3}}}, nil, "overflows"},
		"reserved name": {map[string]Tensor{"__metadata__": F32([]int{1}, []float32{1})}, nil, "reserved"},
		"empty name":    {map[string]Tensor{"": F32([]int{1}, []float32{1})}, nil, "empty tensor name"},
		"bad utf8 name": {map[string]Tensor{"\xff": F32([]int{1}, []float32{1})}, nil, "UTF-8"},
		"bad utf8 meta": {nil, map[string]string{"k": "\xfe"}, "UTF-8"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, c.tensors, c.meta)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "safetensors: ") {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes written despite the error", buf.Len())
			}
		})
	}
}

func TestF32PanicsOnShapeMismatch(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "[2 2]") {
			t.Errorf("recover() = %v, want a panic naming the shape", r)
		}
	}()
	F32([]int{2, 2}, []float32{1, 2, 3})
}

func TestFloatConversionErrors(t *testing.T) {
	u8 := Tensor{DType: "U8", Shape: []int{2}, Data: []byte{1, 2}}
	if _, err := u8.Float32s(); err == nil {
		t.Error("Float32s of U8 succeeded")
	}
	if _, err := u8.Float64s(); err == nil {
		t.Error("Float64s of U8 succeeded")
	}
	bad := Tensor{DType: "F32", Shape: []int{3}, Data: make([]byte, 8)}
	if _, err := bad.Float32s(); err == nil {
		t.Error("Float32s of a short tensor succeeded")
	}
}

// file builds a raw safetensors file from a header string and a buffer.
func file(header string, buf []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(buf))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, buf...)
}

// hostileCases are malformed files, each with a fragment of the error it must give.
var hostileCases = []struct {
	name string
	data []byte
	want string
}{
	{"empty", nil, "too short"},
	{"short length", []byte{1, 2, 3}, "too short"},
	{"header past end", file(`{}`, nil)[:9], "larger than"},
	{"huge header length", append([]byte{0, 0, 0, 0, 0, 0, 0, 0x7f}, "{}"...), "exceeds"},
	{"max uint64 length", append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "{}"...), "exceeds"},
	{"tiny header", file(`{`, nil), "too small"},
	{"not an object", file(`[1,2]   `, nil), "does not start with '{'"},
	{"invalid json", file(`{"a":}`, nil), "header JSON"},
	{"unterminated", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`, make([]byte, 4)), "header JSON"},
	{"trailing garbage in header", file(`{}x`, nil), "after the JSON object"},
	{"two objects", file(`{}{}`, nil), "after the JSON object"},
	{"bad utf8", file("{\"\xff\":1}", nil), "UTF-8"},
	{"unknown dtype", file(`{"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), `unknown dtype "F31"`},
	{"missing dtype", file(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), `missing "dtype"`},
	{"missing shape", file(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), `missing "shape"`},
	{"missing offsets", file(`{"a":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), `missing "data_offsets"`},
	{"unknown field", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, make([]byte, 4)), "unknown field"},
	{"entry not object", file(`{"a":3}`, nil), `tensor "a"`},
	{"negative dim", file(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)), "negative dimension"},
	{"fractional dim", file(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "a"`},
	{"overflow dims", file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, make([]byte, 4)), "overflows"},
	{"overflow bytes", file(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}`, make([]byte, 4)), "overflows"},
	{"size mismatch", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4)), "needs 8"},
	{"three offsets", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 4)), "want 2"},
	{"reversed offsets", file(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4)), "bad data_offsets"},
	{"negative offset", file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}}`, nil), "bad data_offsets"},
	{"gap", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "gap"},
	{"overlap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "overlaps"},
	{"buffer too long", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 8)), "accounts for 4"},
	{"buffer truncated", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 4)), "accounts for 8"},
	{"huge claimed buffer", file(`{"a":{"dtype":"U8","shape":[1000000000000],"data_offsets":[0,1000000000000]}}`, nil), "accounts for 1000000000000"},
	{"duplicate name", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), "duplicate"},
	{"metadata not strings", file(`{"__metadata__":{"k":1}}`, nil), "__metadata__"},
	{"metadata array", file(`{"__metadata__":[]}`, nil), "__metadata__"},
}

func TestReadRejectsHostile(t *testing.T) {
	dir := t.TempDir()
	for i, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			check := func(how string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error, want one containing %q", how, c.want)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "safetensors: ") {
					t.Errorf("%s: %q lacks the package prefix", how, msg)
				}
				// A stream reader cannot know the file size, so it reports
				// too-long or too-short buffers differently.
				if how != "Read" || !strings.Contains(c.want, "accounts for") && !strings.Contains(c.want, "larger than") {
					if !strings.Contains(msg, c.want) {
						t.Errorf("%s: %q does not contain %q", how, msg, c.want)
					}
				}
			}
			_, err := ReadBytes(c.data)
			check("ReadBytes", err)
			_, err = Read(bytes.NewReader(c.data))
			check("Read", err)
			path := filepath.Join(dir, "case"+string(rune('a'+i%26))+".safetensors")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = ReadFile(path)
			check("ReadFile", err)
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("ReadFile error %q does not name %s", err, path)
			}
		})
	}
}

func TestReadStreamTrailingAndTruncated(t *testing.T) {
	good := file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4))
	if _, err := Read(bytes.NewReader(append(good, 0))); err == nil || !strings.Contains(err.Error(), "trailing data") {
		t.Errorf("trailing byte: err = %v", err)
	}
	if _, err := Read(bytes.NewReader(good[:len(good)-1])); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated: err = %v", err)
	}
	if _, err := Read(bytes.NewReader(good[:12])); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated header: err = %v", err)
	}
}

func TestReadHostileReaders(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	want, err := ReadBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{
		"OneByteReader": iotest.OneByteReader(bytes.NewReader(data)),
		"DataErrReader": iotest.DataErrReader(bytes.NewReader(data)),
		"HalfReader":    iotest.HalfReader(bytes.NewReader(data)),
	} {
		f, err := Read(r)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(tensorsOf(f), tensorsOf(want)) || !reflect.DeepEqual(f.Metadata, want.Metadata) {
			t.Errorf("%s: read differs", name)
		}
	}
	boom := errors.New("boom")
	for name, r := range map[string]io.Reader{
		"ErrReader":     iotest.ErrReader(boom),
		"TimeoutReader": iotest.TimeoutReader(bytes.NewReader(data)),
		"mid-header":    io.MultiReader(bytes.NewReader(data[:20]), iotest.ErrReader(boom)),
		"mid-buffer":    io.MultiReader(bytes.NewReader(data[:len(data)-3]), iotest.ErrReader(boom)),
		"after-buffer":  io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)),
	} {
		if _, err := Read(r); err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "TimeoutReader" && !errors.Is(err, boom) {
			t.Errorf("%s: %v does not wrap the reader's error", name, err)
		}
	}
}

func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "absent.safetensors"))
	if err == nil || !strings.Contains(err.Error(), "absent.safetensors") {
		t.Errorf("err = %v", err)
	}
	if _, err := ReadFile(t.TempDir()); err == nil {
		t.Error("ReadFile of a directory succeeded")
	}
}
