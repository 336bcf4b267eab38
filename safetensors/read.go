package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"unicode/utf8"
)

// ReadFile reads and validates the safetensors file at path. Errors name the
// path. The whole file is read into memory.
func ReadFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors: %s: not a regular file", path)
	}
	f, err := read(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return f, nil
}

// Read reads and validates a whole safetensors file from r. It reads exactly
// the bytes the header accounts for plus one more to detect trailing data, so
// r must end where the file ends. Memory grows only with the bytes r actually
// delivers.
func Read(r io.Reader) (*File, error) {
	f, err := read(r, -1)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return f, nil
}

// ReadBytes parses a whole safetensors file held in b. The returned File's
// tensors alias b.
func ReadBytes(b []byte) (*File, error) {
	f, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return f, nil
}

// tensorEntry is one header entry after validation.
type tensorEntry struct {
	name       string
	dtype      string
	shape      []int
	begin, end int64
}

// read parses a file from r. size is the total file size when known, or -1.
// Errors are returned without the package prefix.
func read(r io.Reader, size int64) (*File, error) {
	var lenBuf [8]byte
	if k, err := io.ReadFull(r, lenBuf[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("file too short: %d bytes, need 8 for the header length", k)
		}
		return nil, fmt.Errorf("reading header length: %w", err)
	}
	hlen, err := checkHeaderLen(binary.LittleEndian.Uint64(lenBuf[:]), size)
	if err != nil {
		return nil, err
	}
	header, err := readExactly(r, hlen, size >= 0)
	if err != nil {
		return nil, fmt.Errorf("reading %d-byte header: %w", hlen, err)
	}
	entries, meta, bufLen, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		if rest := size - 8 - hlen; rest != bufLen {
			return nil, fmt.Errorf("byte buffer is %d bytes but the header accounts for %d", rest, bufLen)
		}
	}
	buf, err := readExactly(r, bufLen, size >= 0)
	if err != nil {
		return nil, fmt.Errorf("reading %d-byte buffer: %w", bufLen, err)
	}
	var one [1]byte
	switch k, err := io.ReadFull(r, one[:]); {
	case k > 0:
		return nil, fmt.Errorf("trailing data after the %d-byte buffer", bufLen)
	case err != nil && !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("reading past the buffer: %w", err)
	}
	return assemble(entries, meta, buf), nil
}

// parse parses a whole file held in memory.
func parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("file too short: %d bytes, need 8 for the header length", len(b))
	}
	hlen, err := checkHeaderLen(binary.LittleEndian.Uint64(b[:8]), int64(len(b)))
	if err != nil {
		return nil, err
	}
	entries, meta, bufLen, err := parseHeader(b[8 : 8+hlen])
	if err != nil {
		return nil, err
	}
	if rest := int64(len(b)) - 8 - hlen; rest != bufLen {
		return nil, fmt.Errorf("byte buffer is %d bytes but the header accounts for %d", rest, bufLen)
	}
	return assemble(entries, meta, b[8+hlen:]), nil
}

// checkHeaderLen validates the header length field against the cap and, when
// size >= 0, against the file size.
func checkHeaderLen(n uint64, size int64) (int64, error) {
	if n > MaxHeaderSize {
		return 0, fmt.Errorf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if size >= 0 && int64(n) > size-8 {
		return 0, fmt.Errorf("header length %d is larger than the %d bytes after the length field", n, size-8)
	}
	if n < 2 {
		return 0, fmt.Errorf("header length %d is too small for a JSON object", n)
	}
	return int64(n), nil
}

// readExactly reads n bytes from r. When trusted (n has been checked against
// the real file size) it allocates n bytes at once; otherwise memory grows
// only as r delivers bytes.
func readExactly(r io.Reader, n int64, trusted bool) ([]byte, error) {
	if trusted {
		b := make([]byte, n)
		if k, err := io.ReadFull(r, b); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("truncated: got %d of %d bytes", k, n)
			}
			return nil, err
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("truncated: got %d of %d bytes", len(b), n)
	}
	return b, nil
}

// rawEntry is the JSON form of one tensor's header entry. Pointers tell a
// missing field from a zero one.
type rawEntry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader validates the JSON header and returns its entries sorted by
// offset, the metadata and the byte-buffer length the entries cover.
func parseHeader(h []byte) ([]tensorEntry, map[string]string, int64, error) {
	if !utf8.Valid(h) {
		return nil, nil, 0, errors.New("header is not valid UTF-8")
	}
	if h[0] != '{' {
		return nil, nil, 0, fmt.Errorf("header does not start with '{' (starts with %q)", h[0])
	}
	dec := json.NewDecoder(bytes.NewReader(h))
	if _, err := dec.Token(); err != nil { // the opening '{', checked above
		return nil, nil, 0, fmt.Errorf("header JSON: %w", err)
	}
	var (
		entries []tensorEntry
		meta    map[string]string
		hasMeta bool
		seen    = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, 0, fmt.Errorf("header JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, 0, fmt.Errorf("header JSON: key %v is not a string", tok)
		}
		if seen[name] {
			return nil, nil, 0, fmt.Errorf("header: duplicate key %q", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, 0, fmt.Errorf("header JSON: value of %q: %w", name, err)
		}
		if name == metadataKey {
			hasMeta = true
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, 0, fmt.Errorf("header: %s must map strings to strings: %w", metadataKey, err)
			}
			continue
		}
		if name == "" {
			return nil, nil, 0, errors.New("header: empty tensor name")
		}
		e, err := decodeEntry(name, raw)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("header: tensor %q: %w", name, err)
		}
		entries = append(entries, e)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		if err == nil {
			err = fmt.Errorf("unexpected %v", tok)
		}
		return nil, nil, 0, fmt.Errorf("header JSON: %w", err)
	}
	for i, c := range h[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, nil, 0, fmt.Errorf("header: unexpected byte %q after the JSON object at offset %d", c, int(dec.InputOffset())+i)
		}
	}
	if hasMeta && meta == nil {
		meta = map[string]string{}
	}
	bufLen, err := checkLayout(entries)
	if err != nil {
		return nil, nil, 0, err
	}
	return entries, meta, bufLen, nil
}

// decodeEntry validates one tensor's header entry.
func decodeEntry(name string, raw json.RawMessage) (tensorEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var re rawEntry
	if err := dec.Decode(&re); err != nil {
		return tensorEntry{}, err
	}
	switch {
	case re.DType == nil:
		return tensorEntry{}, errors.New(`missing "dtype"`)
	case re.Shape == nil:
		return tensorEntry{}, errors.New(`missing "shape"`)
	case re.DataOffsets == nil:
		return tensorEntry{}, errors.New(`missing "data_offsets"`)
	}
	size, ok := dtypeSizes[*re.DType]
	if !ok {
		return tensorEntry{}, fmt.Errorf("unknown dtype %q", *re.DType)
	}
	offs := *re.DataOffsets
	if len(offs) != 2 {
		return tensorEntry{}, fmt.Errorf("data_offsets has %d values, want 2", len(offs))
	}
	begin, end := offs[0], offs[1]
	if begin < 0 || end < begin {
		return tensorEntry{}, fmt.Errorf("bad data_offsets [%d, %d]", begin, end)
	}
	shape := make([]int, len(*re.Shape))
	count := int64(1)
	for i, d := range *re.Shape {
		if d < 0 {
			return tensorEntry{}, fmt.Errorf("negative dimension %d at axis %d", d, i)
		}
		if d > math.MaxInt || (d != 0 && count > math.MaxInt64/d) {
			return tensorEntry{}, fmt.Errorf("shape %v: element count overflows", *re.Shape)
		}
		count *= d
		shape[i] = int(d)
	}
	if count > math.MaxInt64/int64(size) {
		return tensorEntry{}, fmt.Errorf("shape %v of %s: byte size overflows", shape, *re.DType)
	}
	if want := count * int64(size); end-begin != want {
		return tensorEntry{}, fmt.Errorf("data_offsets [%d, %d] span %d bytes, but shape %v of %s needs %d",
			begin, end, end-begin, shape, *re.DType, want)
	}
	return tensorEntry{name: name, dtype: *re.DType, shape: shape, begin: begin, end: end}, nil
}

// checkLayout sorts entries by offset and checks that they tile the byte
// buffer from 0 with neither gaps nor overlaps. It returns the buffer length.
func checkLayout(entries []tensorEntry) (int64, error) {
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].begin != entries[j].begin {
			return entries[i].begin < entries[j].begin
		}
		if entries[i].end != entries[j].end {
			return entries[i].end < entries[j].end
		}
		return entries[i].name < entries[j].name
	})
	var pos int64
	for _, e := range entries {
		switch {
		case e.begin > pos:
			return 0, fmt.Errorf("header: gap in the byte buffer: tensor %q starts at %d, previous data ends at %d", e.name, e.begin, pos)
		case e.begin < pos:
			return 0, fmt.Errorf("header: tensor %q at [%d, %d] overlaps data ending at %d", e.name, e.begin, e.end, pos)
		}
		pos = e.end
	}
	if pos > math.MaxInt {
		return 0, fmt.Errorf("header: byte buffer of %d bytes is too large", pos)
	}
	return pos, nil
}

// assemble builds the File over buf from validated entries.
func assemble(entries []tensorEntry, meta map[string]string, buf []byte) *File {
	f := &File{
		Metadata: meta,
		tensors:  make(map[string]Tensor, len(entries)),
		names:    make([]string, 0, len(entries)),
	}
	for _, e := range entries {
		f.tensors[e.name] = Tensor{DType: e.dtype, Shape: e.shape, Data: buf[e.begin:e.end:e.end]}
		f.names = append(f.names, e.name)
	}
	sort.Strings(f.names)
	return f
}
