package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/dataset/imageset"
)

// countProgress shows a count of done things: a progress bar on a
// terminal, a log line every five seconds (and at the end) otherwise. Its
// update may be called from several goroutines.
type countProgress struct {
	mu   sync.Mutex
	w    io.Writer
	what string
	bar  *progressbar.ProgressBar
	last time.Time
	done int64 // the last count shown
}

func newCountProgress(w io.Writer, what string, total int64) *countProgress {
	p := &countProgress{w: w, what: what, last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionUseANSICodes(true),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return p
}

func (p *countProgress) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Set64(done)
		return
	}
	if done != p.done && (time.Since(p.last) >= 5*time.Second || done == total) {
		fmt.Fprintf(p.w, "%s: %d/%d\n", p.what, done, total)
		p.last, p.done = time.Now(), done
	}
}

func (p *countProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}

// waitFor calls check until it succeeds, fails for a reason other than a
// missing file, or wait has passed since the first call (then it returns
// the last error, saying how long it waited), trying again every poll. It
// is how `data verify --wait` lets an init container wait for the data
// another job is still writing.
func waitFor(ctx context.Context, wait, poll time.Duration, logf func(string, ...any), check func() error) error {
	deadline := time.Now().Add(wait)
	told := false
	for {
		err := check()
		if err == nil || !errors.Is(err, fs.ErrNotExist) || wait <= 0 {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("waited %v for the data to appear: %w", wait, err)
		}
		if !told {
			logf("waiting up to %v for the data to appear (%v)", wait, err)
			told = true
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitPoll is how often --wait looks for the data.
func waitPoll(wait time.Duration) time.Duration {
	return min(2*time.Second, max(20*time.Millisecond, wait/20))
}

// verifyShards checks a shard set against its manifest (`data verify
// shards:DIR`).
// With quick, shards are checked by size, not read (imageset.VerifyQuick).
func verifyShards(cmd *cobra.Command, dir string, wait time.Duration, jobs int, quick bool) error {
	var m *imageset.Manifest
	err := waitFor(cmd.Context(), wait, waitPoll(wait), cmdLogf(cmd), func() error {
		if _, err := imageset.ReadManifest(dir); err != nil {
			return err // a pack not finished yet has no manifest
		}
		if quick {
			var err error
			m, err = imageset.VerifyQuick(cmd.Context(), dir, jobs)
			return err
		}
		var p *countProgress
		var once sync.Once
		var err error
		m, err = imageset.Verify(cmd.Context(), dir, jobs, func(done, total int64) {
			once.Do(func() { p = newCountProgress(cmd.ErrOrStderr(), "verify (bytes)", total) })
			p.update(done, total)
		})
		if p != nil {
			p.finish()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("shard set %s failed verification:\n%w", dir, err)
	}
	shards, samples := 0, 0
	for _, split := range imageset.PackSplits {
		for _, s := range m.Splits[split] {
			shards++
			samples += s.Samples
		}
	}
	how := "verified"
	if quick {
		how = "present with their sizes and indexes (not read: --quick)"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s%s: %d shards, %d samples, %d classes %s\n", dataset.ShardsPrefix, dir, shards, samples, len(m.Classes), how)
	return nil
}

func newDataPackCmd() *cobra.Command {
	var o imageset.PackOptions
	cmd := &cobra.Command{
		Use:   "pack SRC DST",
		Short: "Write an image folder (ImageNet's layout) as tar shards with indexes and a manifest",
		Long: "Write the image folder SRC (SRC/train/<class>/*.JPEG, SRC/val in class folders or flat\n" +
			"with a label file) as WebDataset-compatible tar shards DST/train-000000.tar, … and\n" +
			"DST/val-…, each with an index, then DST/manifest.json with every shard's SHA-256.\n" +
			"Samples are dealt to shards by a permutation drawn from --seed. PNGs and CMYK\n" +
			"JPEGs become RGB JPEGs; --max-side downsizes larger images, --quality re-encodes\n" +
			"every image; other JPEGs are copied as they are. Re-running resumes: finished\n" +
			"shards are kept. Train on the result with --dataset shards:DST.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			var p *countProgress
			var once sync.Once
			m, err := imageset.Pack(cmd.Context(), src, dst, o, func(done, total int) {
				once.Do(func() { p = newCountProgress(cmd.ErrOrStderr(), "pack", int64(total)) })
				p.update(int64(done), int64(total))
			})
			if p != nil {
				p.finish()
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, split := range imageset.PackSplits {
				if s := m.Splits[split]; len(s) > 0 {
					n := 0
					for _, info := range s {
						n += info.Samples
					}
					fmt.Fprintf(out, "%s: %d samples in %d shards\n", split, n, len(s))
				}
			}
			fmt.Fprintf(out, "%d classes; manifest %s/%s; train with --dataset %s%s\n", len(m.Classes), dst, imageset.ManifestName, dataset.ShardsPrefix, dst)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.PerShard, "per-shard", 1000, "samples per shard")
	f.IntVar(&o.Jobs, "jobs", 0, "shards written at once (default: one per core)")
	f.IntVar(&o.MaxSide, "max-side", 0, "downsize images whose longer side exceeds this (0: never)")
	f.IntVar(&o.Quality, "quality", 0, "re-encode every image at this JPEG quality, 1-100 (0: copy JPEGs as they are)")
	f.Uint64Var(&o.Seed, "seed", 0, "seed of the permutation that deals samples to shards")
	return cmd
}

func newDataSynthCmd() *cobra.Command {
	var o imageset.SynthOptions
	var size string
	cmd := &cobra.Command{
		Use:   "synth DIR",
		Short: "Write a learnable synthetic image folder of real JPEGs (for tests and benchmarks)",
		Long: "Write DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG: procedurally drawn\n" +
			"objects (a shape and a stripe pattern per class) of varied size, position and\n" +
			"colour over varied backgrounds with noise, so that a ConvNet learns them and no\n" +
			"single pixel tells the class. The same options give the same bytes. Files already\n" +
			"present are kept, so a stopped run resumes. Train on it with --dataset imagefolder:DIR.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := fmt.Sscanf(strings.ToLower(size), "%dx%d", &o.Width, &o.Height); err != nil {
				return fmt.Errorf("--size %q: want WIDTHxHEIGHT, for example 500x375", size)
			}
			var p *countProgress
			var once sync.Once
			err := imageset.Synth(cmd.Context(), args[0], o, func(done, total int) {
				once.Do(func() { p = newCountProgress(cmd.ErrOrStderr(), "synth", int64(total)) })
				p.update(int64(done), int64(total))
			})
			if p != nil {
				p.finish()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d classes of %d×%d JPEGs; train with --dataset %s%s\n",
				args[0], o.Classes, o.Width, o.Height, dataset.ImageFolderPrefix, args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Classes, "classes", 10, "number of classes (at most 1000)")
	f.IntVar(&o.PerClass, "per-class", 100, "training images per class")
	f.IntVar(&o.ValPerClass, "val-per-class", 0, "validation images per class (default per-class/5, at least 1)")
	f.StringVar(&size, "size", "500x375", "image size, WIDTHxHEIGHT")
	f.Uint64Var(&o.Seed, "seed", 1, "seed: the same seed draws the same images")
	f.IntVar(&o.Quality, "quality", 90, "JPEG quality, 1-100")
	return cmd
}
