package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// idxBytes builds a raw IDX file with the given magic, dimensions and payload.
func idxBytes(magic uint32, dims []uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, payload...)
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// seq returns n bytes 0, 1, 2, … (mod 10, so they are valid labels too).
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 10)
	}
	return b
}

func TestReadIDXRawAndGzip(t *testing.T) {
	payload := seq(2 * 28 * 28)
	raw := idxBytes(MagicImages, []uint32{2, 28, 28}, payload)
	for name, data := range map[string][]byte{"raw": raw, "gzip": gz(t, raw)} {
		for rname, r := range map[string]io.Reader{
			"plain":         bytes.NewReader(data),
			"OneByteReader": iotest.OneByteReader(bytes.NewReader(data)),
			"DataErrReader": iotest.DataErrReader(bytes.NewReader(data)),
			"HalfReader":    iotest.HalfReader(bytes.NewReader(data)),
		} {
			x, err := ReadMNISTImages(r, "images")
			if err != nil {
				t.Fatalf("%s/%s: %v", name, rname, err)
			}
			if !reflect.DeepEqual(x.Dims, []int{2, 28, 28}) || !bytes.Equal(x.Data, payload) {
				t.Fatalf("%s/%s: dims %v, %d bytes", name, rname, x.Dims, len(x.Data))
			}
		}
	}
	lbl, err := ReadMNISTLabels(bytes.NewReader(gz(t, idxBytes(MagicLabels, []uint32{5}, []byte{7, 2, 1, 0, 4}))), "labels")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(lbl.Dims, []int{5}) || !bytes.Equal(lbl.Data, []byte{7, 2, 1, 0, 4}) {
		t.Fatalf("labels %v %v", lbl.Dims, lbl.Data)
	}
}

func TestWriteIDXRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	data := seq(3 * 4 * 5)
	if err := WriteIDX(&buf, []int{3, 4, 5}, data); err != nil {
		t.Fatal(err)
	}
	x, err := ReadIDX(&buf, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x.Dims, []int{3, 4, 5}) || !bytes.Equal(x.Data, data) {
		t.Fatalf("got %v %v", x.Dims, x.Data)
	}
	for _, c := range []struct {
		dims []int
		n    int
	}{{nil, 0}, {[]int{2}, 3}, {[]int{-1}, 0}, {make([]int, 256), 0}} {
		if err := WriteIDX(io.Discard, c.dims, make([]byte, c.n)); err == nil {
			t.Errorf("WriteIDX(%v, %d bytes) succeeded", c.dims, c.n)
		}
	}
}

func TestReadIDXRejects(t *testing.T) {
	img := func(n uint32, payload []byte) []byte { return idxBytes(MagicImages, []uint32{n, 28, 28}, payload) }
	good := img(1, seq(784))
	gzGood := gz(t, good)
	cases := []struct {
		name   string
		data   []byte
		labels bool // read as labels instead of images
		want   string
	}{
		{"empty", nil, false, "truncated IDX magic"},
		{"short magic", []byte{0, 0, 8}, false, "truncated IDX magic"},
		{"labels as images", idxBytes(MagicLabels, []uint32{1}, []byte{1}), false, "bad magic 0x00000801, want 0x00000803"},
		{"images as labels", good, true, "bad magic 0x00000803, want 0x00000801"},
		{"gzipped labels as images", gz(t, idxBytes(MagicLabels, []uint32{1}, []byte{1})), false, "bad magic 0x00000801"},
		{"text", []byte("hello world"), false, "bad magic"},
		{"float type", idxBytes(0x00000d03, []uint32{1, 28, 28}, nil), false, "bad magic"},
		{"wrong rows", idxBytes(MagicImages, []uint32{1, 27, 28}, seq(27*28)), false, "images are 27×28, want 28×28"},
		{"wrong cols", idxBytes(MagicImages, []uint32{1, 28, 29}, seq(28*29)), false, "images are 28×29"},
		{"truncated dims", good[:9], false, "truncated 3 dimension sizes"},
		{"truncated payload", good[:len(good)-1], false, "truncated payload: got 783 of 784"},
		{"no payload", img(1, nil), false, "truncated payload: got 0 of 784"},
		{"trailing garbage", append(append([]byte{}, good...), 0), false, "trailing data"},
		{"huge N", img(0xffffffff, seq(784)), false, "more than"},
		{"huge N small enough", img(1000000, seq(784)), false, "truncated payload: got 784 of 784000000"},
		{"label not a digit", idxBytes(MagicLabels, []uint32{2}, []byte{3, 10}), true, "label 10 at index 1"},
		{"gzip truncated", gzGood[:len(gzGood)-5], false, "unexpected EOF"},
		{"gzip corrupt crc", func() []byte {
			b := append([]byte{}, gzGood...)
			b[len(b)-6] ^= 0xff
			return b
		}(), false, "checksum"},
		{"gzip trailing garbage", append(append([]byte{}, gzGood...), "garbage!!!!!"...), false, "trailing data after the gzip stream"},
		{"gzip bad header", []byte{0x1f, 0x8b, 0, 0}, false, "gzip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			read := ReadMNISTImages
			if c.labels {
				read = ReadMNISTLabels
			}
			_, err := read(bytes.NewReader(c.data), "some-file.gz")
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "dataset: some-file.gz: ") || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q, want prefix %q and %q", msg, "dataset: some-file.gz: ", c.want)
			}
		})
	}
}

func TestReadIDXReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	good := idxBytes(MagicImages, []uint32{1, 28, 28}, seq(784))
	for name, r := range map[string]io.Reader{
		"ErrReader":     iotest.ErrReader(boom),
		"mid-header":    io.MultiReader(bytes.NewReader(good[:6]), iotest.ErrReader(boom)),
		"mid-payload":   io.MultiReader(bytes.NewReader(good[:100]), iotest.ErrReader(boom)),
		"after-payload": io.MultiReader(bytes.NewReader(good), iotest.ErrReader(boom)),
		"gzip-mid":      io.MultiReader(bytes.NewReader(gz(t, good)[:30]), iotest.ErrReader(boom)),
	} {
		if _, err := ReadMNISTImages(r, "f"); !errors.Is(err, boom) {
			t.Errorf("%s: err = %v, want one wrapping boom", name, err)
		}
	}
	if _, err := ReadMNISTImages(iotest.TimeoutReader(bytes.NewReader(good)), "f"); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("TimeoutReader: err = %v", err)
	}
}

// FuzzReadIDX checks that no input panics the IDX readers, that accepted
// input re-encodes to an IDX file that reads back the same, and that the
// MNIST readers only accept what the generic reader accepts.
func FuzzReadIDX(f *testing.F) {
	f.Add(idxBytes(MagicImages, []uint32{1, 28, 28}, seq(784)))
	f.Add(idxBytes(MagicLabels, []uint32{3}, []byte{1, 2, 3}))
	f.Add(idxBytes(0x00000802, []uint32{2, 2}, []byte{1, 2, 3, 4}))
	f.Add(gz(f, idxBytes(MagicLabels, []uint32{4}, []byte{9, 8, 7, 6})))
	f.Add(gz(f, idxBytes(MagicImages, []uint32{1, 28, 28}, seq(784))))
	f.Add(idxBytes(MagicImages, []uint32{0xffffffff, 28, 28}, nil))
	f.Add(idxBytes(MagicImages, []uint32{1, 28, 28}, seq(100)))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := ReadIDX(bytes.NewReader(data), "fuzz")
		img, errImg := ReadMNISTImages(bytes.NewReader(data), "fuzz")
		lbl, errLbl := ReadMNISTLabels(bytes.NewReader(data), "fuzz")
		if err != nil {
			if errImg == nil || errLbl == nil {
				t.Fatalf("generic reader failed (%v) but an MNIST reader accepted", err)
			}
			return
		}
		size := 1
		for _, d := range x.Dims {
			size *= d
		}
		if size != len(x.Data) {
			t.Fatalf("dims %v but %d bytes", x.Dims, len(x.Data))
		}
		var buf bytes.Buffer
		if err := WriteIDX(&buf, x.Dims, x.Data); err != nil {
			t.Fatal(err)
		}
		y, err := ReadIDX(&buf, "again")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatal("re-encoded IDX reads back differently")
		}
		if errImg == nil && (len(img.Dims) != 3 || img.Dims[1] != 28 || img.Dims[2] != 28) {
			t.Fatalf("MNIST images accepted with dims %v", img.Dims)
		}
		if errLbl == nil {
			if len(lbl.Dims) != 1 {
				t.Fatalf("MNIST labels accepted with dims %v", lbl.Dims)
			}
			for _, l := range lbl.Data {
				if l > 9 {
					t.Fatalf("label %d accepted", l)
				}
			}
		}
	})
}
