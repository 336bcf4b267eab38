package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/dataset/imageset"
)

// imagepipeResult is what `bench imagepipe --json` prints: throughput in
// images per second of the process's CPU time (user and system), so that
// a busy machine slows the figures less than wall time would; run it on
// one core (taskset -c 0, GOMAXPROCS=1) to compare with a peer's one core.
type imagepipeResult struct {
	Files  int   `json:"files"`
	Bytes  int64 `json:"bytes"`
	Size   int   `json:"size"`
	Passes int   `json:"passes"`
	// Per round: decode + training transform, and decode alone.
	Pipeline []float64 `json:"pipeline_images_per_cpu_s"`
	Decode   []float64 `json:"decode_images_per_cpu_s"`
	// Decode to interleaved RGB: what libjpeg's decoders output.
	DecodeRGB []float64 `json:"decode_rgb_images_per_cpu_s"`
	// Medians over the rounds.
	PipelineMedian  float64 `json:"pipeline_median"`
	DecodeMedian    float64 `json:"decode_median"`
	DecodeRGBMedian float64 `json:"decode_rgb_median"`
}

// processCPU returns the process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readImages returns the contents of the JPEG and PNG files under dir (by
// their extension), in path order.
func readImages(dir string) ([][]byte, int64, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".jpg", ".jpeg", ".png":
			if d.Type().IsRegular() {
				paths = append(paths, path)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if len(paths) == 0 {
		return nil, 0, fmt.Errorf("no .jpg, .jpeg or .png files under %s", dir)
	}
	slices.Sort(paths)
	out := make([][]byte, len(paths))
	var total int64
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, 0, err
		}
		out[i] = b
		total += int64(len(b))
	}
	return out, total, nil
}

func newBenchImagepipeCmd() *cobra.Command {
	var (
		dir     string
		size    int
		passes  int
		rounds  int
		seed    uint64
		asJSON  bool
		cpuProf string
	)
	cmd := &cobra.Command{
		Use:   "imagepipe",
		Short: "Measure the image input pipeline (decode, random resized crop, flip, normalize) per CPU second",
		Long: "Read every .jpg, .jpeg and .png under --dir into memory, then, in each round, run\n" +
			"the training input pipeline of a sample over all of them (decode, torchvision's\n" +
			"RandomResizedCrop to --size, horizontal flip, normalization into float32 CHW),\n" +
			"then decode alone (to the decoder's planes), then decode to interleaved RGB. Figures are images per second of the process's CPU time: run\n" +
			"it under taskset -c 0 with GOMAXPROCS=1 to measure one core.",
		Example: `  GOMAXPROCS=1 taskset -c 0 ringtrain bench imagepipe --dir photos --json
  ringtrain bench imagepipe --dir photos --rounds 1 --cpuprofile pipe.prof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--dir is required")
			}
			if size < 1 || passes < 1 || rounds < 1 {
				return errors.New("--size, --passes and --repeat must be at least 1")
			}
			imgs, total, err := readImages(dir)
			if err != nil {
				return err
			}
			if cpuProf != "" {
				f, err := os.Create(cpuProf)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			res := imagepipeResult{Files: len(imgs), Bytes: total, Size: size, Passes: passes}
			var pl imageset.Pipeline
			dst := make([]float32, 3*size*size)
			p := imageset.Params{H: size, W: size, Train: true, Seed: seed}
			for r := range rounds {
				p.Epoch = r
				c0 := processCPU()
				for range passes {
					for i, b := range imgs {
						if err := pl.Sample(dst, b, p, i); err != nil {
							return fmt.Errorf("image %d: %w", i, err)
						}
					}
				}
				c1 := processCPU()
				for range passes {
					for i, b := range imgs {
						if _, err := pl.Decode(b); err != nil {
							return fmt.Errorf("image %d: %w", i, err)
						}
					}
				}
				c2 := processCPU()
				for range passes {
					for i, b := range imgs {
						if _, _, _, err := pl.DecodeRGB(b); err != nil {
							return fmt.Errorf("image %d: %w", i, err)
						}
					}
				}
				c3 := processCPU()
				n := float64(passes * len(imgs))
				res.Pipeline = append(res.Pipeline, n/(c1-c0).Seconds())
				res.Decode = append(res.Decode, n/(c2-c1).Seconds())
				res.DecodeRGB = append(res.DecodeRGB, n/(c3-c2).Seconds())
			}
			res.PipelineMedian, res.DecodeMedian, res.DecodeRGBMedian = median(res.Pipeline), median(res.Decode), median(res.DecodeRGB)
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintln(out, string(b))
				return nil
			}
			fmt.Fprintf(out, "%d images (%.1f MB), %d×%d: pipeline %.1f images/cpu-s, decode alone %.1f images/cpu-s (%.1f to RGB) (medians of %d rounds × %d passes)\n",
				res.Files, float64(total)/1e6, size, size, res.PipelineMedian, res.DecodeMedian, res.DecodeRGBMedian, rounds, passes)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory of the images (searched recursively)")
	f.IntVar(&size, "size", 224, "output side (the crop is resized to size×size)")
	f.IntVar(&passes, "passes", 1, "passes over the images per round")
	f.IntVar(&rounds, "repeat", 1, "rounds (the median is reported)")
	f.Uint64Var(&seed, "seed", 1, "seed of the random crops and flips")
	f.BoolVar(&asJSON, "json", false, "print one JSON line")
	f.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	return cmd
}
