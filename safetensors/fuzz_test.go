package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"reflect"
	"testing"
)

// FuzzRead checks that no input makes the reader panic, that the in-memory
// and streaming readers agree, and that whatever is accepted survives a
// write/read round trip and is then written identically (canonical form).
func FuzzRead(f *testing.F) {
	for _, path := range []string{lenet5Path, lenet5F32Path, opsPath} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		n := binary.LittleEndian.Uint64(b)
		f.Add(b[:8+n]) // the reference header, without its buffer
	}
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(file(`{"__metadata__":{}}`, nil))
	f.Add(file(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, []byte{1, 2}))
	for _, c := range hostileCases {
		f.Add(c.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fb, errB := ReadBytes(data)
		fr, errR := Read(bytes.NewReader(data))
		if (errB == nil) != (errR == nil) {
			t.Fatalf("ReadBytes err %v, Read err %v", errB, errR)
		}
		if errB != nil {
			return
		}
		if !reflect.DeepEqual(tensorsOf(fb), tensorsOf(fr)) || !reflect.DeepEqual(fb.Metadata, fr.Metadata) {
			t.Fatal("ReadBytes and Read disagree")
		}
		var w1 bytes.Buffer
		if err := Write(&w1, tensorsOf(fb), fb.Metadata); err != nil {
			t.Fatalf("rewriting an accepted file: %v", err)
		}
		f2, err := ReadBytes(w1.Bytes())
		if err != nil {
			t.Fatalf("reading a rewritten file: %v", err)
		}
		if !reflect.DeepEqual(tensorsOf(fb), tensorsOf(f2)) || len(fb.Metadata) != len(f2.Metadata) {
			t.Fatal("round trip changed the tensors")
		}
		for k, v := range fb.Metadata {
			if f2.Metadata[k] != v {
				t.Fatalf("round trip changed metadata %q", k)
			}
		}
		var w2 bytes.Buffer
		if err := Write(&w2, tensorsOf(f2), f2.Metadata); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w1.Bytes(), w2.Bytes()) {
			t.Fatal("second write differs from the first")
		}
	})
}
