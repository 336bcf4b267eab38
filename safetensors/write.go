package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/google/renameio/v2"
)

// Write writes tensors and metadata to w as one safetensors file.
//
// The output is deterministic. The header is compact JSON: "__metadata__"
// first (omitted when metadata is empty) with its keys sorted, then the
// tensors in sorted name order. The byte buffer lays tensors out by
// decreasing element size, then by name, so every tensor starts at a multiple
// of its element size; the header is padded with spaces to a multiple of 8
// bytes, so the buffer itself starts 8-byte aligned.
//
// Every tensor must have a known dtype, non-negative dimensions and exactly
// prod(shape) × element-size bytes of Data; names must be non-empty valid
// UTF-8 other than "__metadata__". A violation is an error and nothing is
// written.
func Write(w io.Writer, tensors map[string]Tensor, metadata map[string]string) error {
	header, order, err := encodeHeader(tensors, metadata)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: writing header length: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return fmt.Errorf("safetensors: writing header: %w", err)
	}
	for _, name := range order {
		if _, err := w.Write(tensors[name].Data); err != nil {
			return fmt.Errorf("safetensors: writing tensor %q: %w", name, err)
		}
	}
	return nil
}

// WriteFile writes tensors and metadata to path atomically: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory. On error no file is left at path that was not there
// before (an existing file is left as it was). The file gets mode 0644
// (less the umask).
func WriteFile(path string, tensors map[string]Tensor, metadata map[string]string) error {
	dir := filepath.Dir(path)
	tmp, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithPermissions(0o644))
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer tmp.Cleanup()
	if err := Write(tmp, tensors, metadata); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	if err := tmp.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return fmt.Errorf("safetensors: syncing %s: %w", dir, serr)
		}
	}
	return nil
}

// encodeHeader validates the inputs and returns the padded header and the
// names in buffer order.
func encodeHeader(tensors map[string]Tensor, metadata map[string]string) ([]byte, []string, error) {
	names := sortedNames(tensors)
	for _, name := range names {
		if err := validName(name); err != nil {
			return nil, nil, err
		}
		t := tensors[name]
		if _, err := t.check(); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("metadata %q: key and value must be valid UTF-8", k)
		}
	}

	order := append([]string(nil), names...)
	sort.SliceStable(order, func(i, j int) bool {
		return dtypeSizes[tensors[order[i]].DType] > dtypeSizes[tensors[order[j]].DType]
	})
	offsets := make(map[string][2]int64, len(order))
	var pos int64
	for _, name := range order {
		n := int64(len(tensors[name].Data))
		offsets[name] = [2]int64{pos, pos + n}
		pos += n
	}

	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	comma := func() {
		if !first {
			b.WriteByte(',')
		}
		first = false
	}
	if len(metadata) > 0 {
		comma()
		writeJSONString(&b, metadataKey)
		b.WriteString(":{")
		for i, k := range sortedNames(metadata) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
	}
	for _, name := range names {
		t := tensors[name]
		comma()
		writeJSONString(&b, name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, t.DType)
		b.WriteString(`,"shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		off := offsets[name]
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off[0], off[1])
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), order, nil
}

// writeJSONString appends s as a JSON string literal without HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a valid UTF-8 string always encodes
	b.Truncate(b.Len() - 1) // drop the encoder's newline
}
