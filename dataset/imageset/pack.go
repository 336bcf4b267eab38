package imageset

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/google/renameio/v2"
)

// PackOptions says how Pack writes shards.
type PackOptions struct {
	PerShard int    // samples per shard (0: 1000)
	Jobs     int    // shards written at once (0: GOMAXPROCS)
	MaxSide  int    // images with a longer side are downsized to it (0: never)
	Quality  int    // re-encode every image at this JPEG quality (0: keep JPEGs as they are)
	Seed     uint64 // the permutation that deals samples to shards
}

// outlierQuality is the JPEG quality of images Pack must re-encode (PNGs,
// CMYK JPEGs, downsized ones) when PackOptions.Quality is 0.
const outlierQuality = 95

// PackSplits are the splits Pack writes, when the source has them.
var PackSplits = []string{"train", "val"}

// Pack writes the image folder src (see OpenFolder) as shards into dst:
// for each split, <split>-000000.tar, … of PerShard samples each (the last
// fewer), dealt by a permutation drawn from Seed so that every shard
// mixes the classes; each with its index (<shard>.tar.idx); then
// manifest.json, the classes and every shard's sample count, size and
// SHA-256, written last so that its presence means the set is whole.
//
// Sample j of a shard is the members <key>.jpg (the image), <key>.cls (its
// label, a decimal number) and <key>.json ({"file": its path in src,
// "class": its class name}), where key is its position in the split's
// permuted order, 8 digits: WebDataset reads them. Images that strict
// readers refuse are converted to baseline RGB JPEG (PNGs, CMYK JPEGs),
// as are images longer than MaxSide (downsized with the antialiasing
// filter, keeping the aspect ratio), and every image when Quality is set;
// other JPEGs are copied byte for byte.
//
// Pack resumes: a shard whose index already lists exactly the samples it
// is to hold is kept. Shards are written to a temporary file and renamed,
// so a stopped run leaves no partial shard. progress, if not nil, is told
// the samples done and the total, one call at a time, from the goroutines
// Pack runs (which end before it returns). Errors name the file that failed.
func Pack(ctx context.Context, src, dst string, o PackOptions, progress func(done, total int)) (*Manifest, error) {
	if o.PerShard == 0 {
		o.PerShard = 1000
	}
	if o.PerShard < 1 || o.Jobs < 0 || o.MaxSide < 0 || o.Quality < 0 || o.Quality > 100 {
		return nil, fmt.Errorf("imageset: pack: bad options %+v (per shard ≥ 1, quality 0 … 100)", o)
	}
	classes, err := FolderClasses(src)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("imageset: pack: %w", err)
	}
	m := &Manifest{Format: manifestFormat, Classes: classes, Splits: make(map[string][]ShardInfo)}
	type shardJob struct {
		split   string
		f       *folder
		k       int
		samples []int // the folder's sample numbers, in shard order
		first   int   // the key of the first
	}
	var jobs []shardJob
	total := 0
	for _, split := range PackSplits {
		if _, err := os.Stat(filepath.Join(src, split)); errors.Is(err, fs.ErrNotExist) && split != "train" {
			continue
		}
		s, err := OpenFolder(src, split)
		if err != nil {
			return nil, err
		}
		f := s.src.(*folder)
		perm := permutation(len(f.files), o.Seed)
		n := (len(perm) + o.PerShard - 1) / o.PerShard
		m.Splits[split] = make([]ShardInfo, n)
		for k := range n {
			lo := k * o.PerShard
			jobs = append(jobs, shardJob{split, f, k, perm[lo:min(lo+o.PerShard, len(perm))], lo})
		}
		total += len(perm)
	}
	done := &counter[int]{total: total, progress: progress}
	report := done.add
	err = forEachN(ctx, len(jobs), o.Jobs, func(j int) error {
		job := jobs[j]
		name := fmt.Sprintf("%s-%06d.tar", job.split, job.k)
		var info ShardInfo
		var err error
		if ix := packedIndex(dst, name, job.first, len(job.samples)); ix != nil {
			info = ShardInfo{Name: name, Samples: len(ix.Samples), Bytes: ix.TarBytes, SHA256: ix.SHA256}
			report(len(job.samples))
		} else if info, err = writeShard(ctx, dst, name, job.f, job.samples, job.first, classes, o, report); err != nil {
			return err
		}
		m.Splits[job.split][job.k] = info
		return nil
	})
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(filepath.Join(dst, ManifestName), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("imageset: pack: %w", err)
	}
	return m, nil
}

// permutation returns a permutation of 0 … n−1 drawn from seed
// (Fisher–Yates on the splitmix64 stream).
func permutation(n int, seed uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r := rng{s: seed ^ 0x7061636b} // "pack"
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// sampleKey is the key of the sample at position i of a split's order.
func sampleKey(i int) string { return fmt.Sprintf("%08d", i) }

// packedIndex returns the index of dst/name if the shard is there, whole,
// and holds n samples with keys first, first+1, …; else nil.
func packedIndex(dst, name string, first, n int) *Index {
	st, err := os.Stat(filepath.Join(dst, name))
	if err != nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dst, name) + IndexSuffix)
	if err != nil {
		return nil
	}
	ix, err := ParseIndex(b, name+IndexSuffix)
	if err != nil || ix.TarBytes != st.Size() || len(ix.Samples) != n {
		return nil
	}
	for j, e := range ix.Samples {
		if e.Member != sampleKey(first+j)+".jpg" {
			return nil
		}
	}
	return ix
}

// countWriter counts and hashes what is written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeShard writes the samples of f into the shard dst/name and its
// index, and returns its manifest entry.
func writeShard(ctx context.Context, dst, name string, f *folder, samples []int, first int, classes []string, o PackOptions, report func(int)) (ShardInfo, error) {
	path := filepath.Join(dst, name)
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return ShardInfo{}, fmt.Errorf("imageset: pack: %w", err)
	}
	defer pf.Cleanup()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(pf, h)}
	tw := tar.NewWriter(cw)
	ix := &Index{}
	var buf []byte
	put := func(member string, data []byte) (int64, error) {
		hdr := &tar.Header{Name: member, Size: int64(len(data)), Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return 0, fmt.Errorf("imageset: pack: %s: member %s: %w", path, member, err)
		}
		off := cw.n
		if _, err := tw.Write(data); err != nil {
			return 0, fmt.Errorf("imageset: pack: %s: member %s: %w", path, member, err)
		}
		return off, nil
	}
	for j, i := range samples {
		if err := ctx.Err(); err != nil {
			return ShardInfo{}, err
		}
		file := f.where(i)
		buf, err = readFile(file, buf[:0])
		if err != nil {
			return ShardInfo{}, fmt.Errorf("imageset: pack: %w", err)
		}
		img, err := packImage(buf, o)
		if err != nil {
			return ShardInfo{}, fmt.Errorf("imageset: pack: %s: %w", file, err)
		}
		key := sampleKey(first + j)
		label := int(f.labels[i])
		off, err := put(key+".jpg", img)
		if err != nil {
			return ShardInfo{}, err
		}
		ix.Samples = append(ix.Samples, IndexEntry{Offset: off, Size: int64(len(img)), Label: label, Member: key + ".jpg"})
		if _, err := put(key+".cls", []byte(strconv.Itoa(label))); err != nil {
			return ShardInfo{}, err
		}
		meta, _ := json.Marshal(struct {
			File  string `json:"file"`
			Class string `json:"class"`
		}{filepath.ToSlash(filepath.Join(filepath.Base(f.root), f.files[i])), classes[label]})
		if _, err := put(key+".json", meta); err != nil {
			return ShardInfo{}, err
		}
		report(1)
	}
	if err := tw.Close(); err != nil {
		return ShardInfo{}, fmt.Errorf("imageset: pack: %s: %w", path, err)
	}
	ix.TarBytes, ix.SHA256 = cw.n, hex.EncodeToString(h.Sum(nil))
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return ShardInfo{}, fmt.Errorf("imageset: pack: %w", err)
	}
	if err := renameio.WriteFile(path+IndexSuffix, ix.AppendText(nil), 0o644); err != nil {
		return ShardInfo{}, fmt.Errorf("imageset: pack: %w", err)
	}
	return ShardInfo{Name: name, Samples: len(ix.Samples), Bytes: ix.TarBytes, SHA256: ix.SHA256}, nil
}

// packImage returns the bytes of an image as Pack stores it (see Pack).
func packImage(data []byte, o PackOptions) ([]byte, error) {
	f, cfg, err := DecodeConfig(data, MaxPixels)
	if err != nil {
		return nil, err
	}
	long := max(cfg.Width, cfg.Height)
	shrink := o.MaxSide > 0 && long > o.MaxSide
	if f == JPEG && cfg.ColorModel != color.CMYKModel && !shrink && o.Quality == 0 {
		return data, nil
	}
	img, err := Decode(data, MaxPixels)
	if err != nil {
		return nil, err
	}
	w, h := cfg.Width, cfg.Height
	if shrink {
		w = max(1, roundHalfEven(float64(cfg.Width)*float64(o.MaxSide)/float64(long)))
		h = max(1, roundHalfEven(float64(cfg.Height)*float64(o.MaxSide)/float64(long)))
	}
	rgb, err := rgbRegion(nil, img, img.Bounds())
	if err != nil {
		return nil, err
	}
	if shrink {
		out := make([]uint8, 3*w*h)
		resampleRGB(out, resampleAxis(0, cfg.Width, w, 0, w), resampleAxis(0, cfg.Height, h, 0, h), rgb, cfg.Width, 0, 0, nil)
		rgb = out
	}
	rgba := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		rgba.Pix[4*i], rgba.Pix[4*i+1], rgba.Pix[4*i+2], rgba.Pix[4*i+3] = rgb[3*i], rgb[3*i+1], rgb[3*i+2], 255
	}
	q := o.Quality
	if q == 0 {
		q = outlierQuality
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, rgba, &jpeg.Options{Quality: q}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
