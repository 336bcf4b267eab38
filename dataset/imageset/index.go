package imageset

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// IndexSuffix is appended to a shard's file name to name its index.
const IndexSuffix = ".idx"

// indexMagic is the first line of an index file.
const indexMagic = "ringtrain shard index 1"

// Index is the sidecar of one tar shard: what its samples are and where
// their images lie, so that the shard's length is known without reading
// it and any sample is one ranged read. Its file (the shard's name plus
// IndexSuffix) is text:
//
//	ringtrain shard index 1
//	tar <bytes> <sha256>
//	samples <n>
//	<offset> <size> <label> <member>     one line per sample, n lines
//
// where bytes and sha256 are the shard's size and SHA-256 (hex), and each
// sample line gives the byte offset and size of its image's data in the
// shard, its label (the .cls member's number) and the image member's name.
type Index struct {
	TarBytes int64
	SHA256   string // hex
	Samples  []IndexEntry
}

// IndexEntry is one sample of a shard.
type IndexEntry struct {
	Offset, Size int64
	Label        int
	Member       string // the image member's name, e.g. "00001234.jpg"
}

// AppendText appends the index's file to b.
func (ix *Index) AppendText(b []byte) []byte {
	b = fmt.Appendf(b, "%s\ntar %d %s\nsamples %d\n", indexMagic, ix.TarBytes, ix.SHA256, len(ix.Samples))
	for _, e := range ix.Samples {
		b = fmt.Appendf(b, "%d %d %d %s\n", e.Offset, e.Size, e.Label, e.Member)
	}
	return b
}

// ParseIndex reads an index file (see Index). Every field is bounded
// before it is trusted: members lie inside the shard in order, without
// overlap, at 512-byte block boundaries; a shard of b bytes holds at most
// b/1024 samples; labels are non-negative. name is the file's name in
// errors, which give the line and what is wrong.
func ParseIndex(data []byte, name string) (*Index, error) {
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("imageset: %s line %d: %s", name, line, fmt.Sprintf(format, args...))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), maxLine)
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	if l, ok := next(); !ok || l != indexMagic {
		return nil, bad(1, "not a shard index (want %q)", indexMagic)
	}
	ix := new(Index)
	l, _ := next()
	f := strings.Fields(l)
	var err error
	if len(f) != 3 || f[0] != "tar" {
		return nil, bad(2, "want tar <bytes> <sha256>, got %q", l)
	}
	if ix.TarBytes, err = strconv.ParseInt(f[1], 10, 64); err != nil || ix.TarBytes < 0 {
		return nil, bad(2, "bad shard size %q", f[1])
	}
	if s, err := hex.DecodeString(f[2]); err != nil || len(s) != sha256.Size {
		return nil, bad(2, "bad SHA-256 %q", f[2])
	}
	ix.SHA256 = f[2]
	l, _ = next()
	n, err := strconv.Atoi(strings.TrimPrefix(l, "samples "))
	if !strings.HasPrefix(l, "samples ") || err != nil || n < 0 {
		return nil, bad(3, "want samples <n>, got %q", l)
	}
	if int64(n) > ix.TarBytes/1024 {
		return nil, bad(3, "%d samples cannot fit in a shard of %d bytes", n, ix.TarBytes)
	}
	// Each sample line takes at least 8 bytes, so this bounds the
	// allocation by the index's own size.
	ix.Samples = make([]IndexEntry, 0, min(n, len(data)/8))
	end := int64(0)
	for range n {
		l, ok := next()
		if !ok {
			break
		}
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 || f[3] == "" {
			return nil, bad(line, "want <offset> <size> <label> <member>, got %q", l)
		}
		var e IndexEntry
		var err1, err2, err3 error
		e.Offset, err1 = strconv.ParseInt(f[0], 10, 64)
		e.Size, err2 = strconv.ParseInt(f[1], 10, 64)
		e.Label, err3 = strconv.Atoi(f[2])
		e.Member = f[3]
		switch {
		case err1 != nil || err2 != nil || err3 != nil:
			return nil, bad(line, "bad number in %q", l)
		case e.Offset < end+512 || e.Offset%512 != 0:
			return nil, bad(line, "member %s at offset %d: not after the previous member's data and a header, on a 512-byte block", e.Member, e.Offset)
		case e.Size < 0 || e.Size > ix.TarBytes-e.Offset:
			return nil, bad(line, "member %s of %d bytes at offset %d runs past the shard's %d bytes", e.Member, e.Size, e.Offset, ix.TarBytes)
		case e.Size > MaxImageBytes:
			return nil, bad(line, "member %s: %d bytes, more than the %d an image may take", e.Member, e.Size, MaxImageBytes)
		case e.Label < 0:
			return nil, bad(line, "member %s: negative label %d", e.Member, e.Label)
		}
		end = e.Offset + e.Size
		ix.Samples = append(ix.Samples, e)
	}
	if err := sc.Err(); err != nil {
		return nil, bad(line+1, "%v", err)
	}
	if len(ix.Samples) != n {
		return nil, bad(line, "%d samples listed, the header says %d", len(ix.Samples), n)
	}
	if _, ok := next(); ok {
		return nil, bad(line, "more than the %d samples the header says", n)
	}
	return ix, nil
}

// countingReader counts the bytes read through it and hashes them.
type countingReader struct {
	r io.Reader
	n int64
	h io.Writer
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.h.Write(p[:n])
	return n, err
}

// imageExts are the member extensions (lower case) that hold a sample's
// image; clsExt holds its label.
var imageExts = map[string]bool{"jpg": true, "jpeg": true, "png": true}

const (
	clsExt      = "cls"
	maxClsBytes = 64
)

// splitKey splits a member name into its sample key and extension as
// WebDataset does: the extension starts at the first dot of the base name.
func splitKey(name string) (key, ext string) {
	dir, base := path.Split(name)
	b, e, _ := strings.Cut(base, ".")
	return dir + b, e
}

// ScanShard reads a tar shard sequentially and returns its index. Members
// are grouped into samples by key (consecutive members <key>.<ext>); a
// sample needs one image member (.jpg, .jpeg or .png, any case) and a .cls
// member holding its label as a decimal number; .json and other members
// are skipped. Only regular files and directories are allowed. name is the
// shard's name in errors, which also name the member.
func ScanShard(r io.Reader, name string) (*Index, error) {
	h := sha256.New()
	cr := &countingReader{r: r, h: h}
	tr := tar.NewReader(cr)
	ix := new(Index)
	var key string
	var cur IndexEntry
	haveImg, haveCls, started := false, false, false
	flush := func(next string) error {
		if !started {
			return nil
		}
		switch {
		case !haveImg:
			return fmt.Errorf("imageset: %s: sample %s has no image member (.jpg, .jpeg or .png) before %s", name, key, next)
		case !haveCls:
			return fmt.Errorf("imageset: %s: sample %s has no .cls member before %s", name, key, next)
		}
		ix.Samples = append(ix.Samples, cur)
		return nil
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if err := flush("the end"); err != nil {
				return nil, err
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("imageset: %s: after %d samples: %w", name, len(ix.Samples), err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return nil, fmt.Errorf("imageset: %s: member %s is not a regular file (type %q)", name, hdr.Name, hdr.Typeflag)
		}
		k, ext := splitKey(hdr.Name)
		if !started || k != key {
			if err := flush(hdr.Name); err != nil {
				return nil, err
			}
			key, cur, haveImg, haveCls, started = k, IndexEntry{}, false, false, true
		}
		ext = strings.ToLower(ext)
		switch {
		case imageExts[ext]:
			if haveImg {
				return nil, fmt.Errorf("imageset: %s: sample %s has a second image member %s", name, key, hdr.Name)
			}
			if hdr.Size > MaxImageBytes {
				return nil, fmt.Errorf("imageset: %s: member %s: %d bytes, more than the %d an image may take", name, hdr.Name, hdr.Size, MaxImageBytes)
			}
			for k := range hdr.PAXRecords {
				if strings.HasPrefix(k, "GNU.sparse.") {
					return nil, fmt.Errorf("imageset: %s: member %s is a sparse file", name, hdr.Name)
				}
			}
			if strings.ContainsAny(hdr.Name, "\n\r") {
				return nil, fmt.Errorf("imageset: %s: member name %q holds a line break", name, hdr.Name)
			}
			haveImg = true
			cur.Offset, cur.Size, cur.Member = cr.n, hdr.Size, hdr.Name
		case ext == clsExt:
			if hdr.Size > maxClsBytes {
				return nil, fmt.Errorf("imageset: %s: member %s: %d bytes, a label takes at most %d", name, hdr.Name, hdr.Size, maxClsBytes)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("imageset: %s: member %s: %w", name, hdr.Name, err)
			}
			k, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || k < 0 {
				return nil, fmt.Errorf("imageset: %s: member %s: label %q is not a non-negative number", name, hdr.Name, b)
			}
			haveCls, cur.Label = true, k
		}
	}
	// Hash the rest: the end-of-archive blocks and any padding after.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil, fmt.Errorf("imageset: %s: %w", name, err)
	}
	ix.TarBytes, ix.SHA256 = cr.n, hex.EncodeToString(h.Sum(nil))
	if len(ix.Samples) == 0 {
		return nil, errors.New("imageset: " + name + ": no samples")
	}
	return ix, nil
}
