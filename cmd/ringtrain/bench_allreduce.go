package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/pki"
)

// allreduceBenchFlags are shared by the parent command and its rank
// processes.
type allreduceBenchFlags struct {
	ranks   int
	size    string
	codec   string
	iters   int
	warmup  int
	chunk   int
	window  int
	timeout time.Duration
	seed    uint64
	jsonOut bool
	cpuProf string
	shm     bool
	tls     bool
	tlsDir  string // the rank processes' certificates (set by the parent)
}

func (f *allreduceBenchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.ranks, "ranks", 4, "number of rank processes")
	fl.StringVar(&f.size, "size", "64MiB", "bytes of float32 data reduced per operation (e.g. 1MiB, 64MiB)")
	fl.StringVar(&f.codec, "codec", "fp32", "wire codec: fp32, bf16, fp16, optionally +zstd or +s2; or powersgd-rN")
	fl.IntVar(&f.iters, "iters", 20, "timed iterations")
	fl.IntVar(&f.warmup, "warmup", 3, "untimed warm-up iterations")
	fl.IntVar(&f.chunk, "chunk", allreduce.DefaultChunk, "elements per frame")
	fl.IntVar(&f.window, "window", 32<<20, "bytes in flight per link")
	fl.DurationVar(&f.timeout, "timeout", 20*time.Second, "peer stall timeout")
	fl.Uint64Var(&f.seed, "seed", 1, "data seed")
	fl.BoolVar(&f.jsonOut, "json", false, "print one machine-readable JSON line")
	fl.StringVar(&f.cpuProf, "cpuprofile", "", "write each rank's CPU profile to this directory (rank-N.prof)")
	fl.BoolVar(&f.shm, "shm", true, "carry frames between ranks through shared-memory rings (false: every frame on the gRPC stream, as between hosts)")
	fl.BoolVar(&f.tls, "tls", false, "run every link over mutual TLS 1.3, with certificates of a throwaway CA, as a cluster with --tls-cert does")
}

func (f *allreduceBenchFlags) args() []string {
	return []string{
		"--ranks", strconv.Itoa(f.ranks), "--size", f.size, "--codec", f.codec,
		"--iters", strconv.Itoa(f.iters), "--warmup", strconv.Itoa(f.warmup),
		"--chunk", strconv.Itoa(f.chunk), "--window", strconv.Itoa(f.window),
		"--timeout", f.timeout.String(), "--seed", strconv.FormatUint(f.seed, 10),
		"--cpuprofile", f.cpuProf, "--shm=" + strconv.FormatBool(f.shm),
		"--tls=" + strconv.FormatBool(f.tls), "--tls-dir", f.tlsDir,
	}
}

// benchTokenEnv carries the benchmark ring's join token to its rank
// processes.
const benchTokenEnv = "RINGTRAIN_BENCH_RING_TOKEN"

// allreduceResult is the command's --json line.
type allreduceResult struct {
	Ranks      int       `json:"ranks"`
	Bytes      int64     `json:"bytes"`
	Codec      string    `json:"codec"`
	Iters      int       `json:"iters"`
	MedianS    float64   `json:"median_s"`
	MinS       float64   `json:"min_s"`
	MaxS       float64   `json:"max_s"`
	AlgBWGBps  float64   `json:"algbw_gbps"`
	BusBWGBps  float64   `json:"busbw_gbps"`
	WireRatio  float64   `json:"compression_ratio"`
	RelL2Error float64   `json:"rel_l2_error"`
	TimesS     []float64 `json:"times_s"`
}

// rankReport is what each rank process prints on stdout.
type rankReport struct {
	Rank      int       `json:"rank"`
	Times     []float64 `json:"times_s"`
	WireRatio float64   `json:"compression_ratio"`
	RelErr    float64   `json:"rel_l2_error"`
}

func newBenchAllreduceCmd() *cobra.Command {
	var f allreduceBenchFlags
	cmd := &cobra.Command{
		Use:   "allreduce",
		Short: "Time ring all-reduce across rank processes over loopback gRPC",
		Long: `Starts --ranks copies of this binary, each one rank of a ring connected by
gRPC over loopback, and times all-reduce of --size bytes of float32 data.
Ranks on one host move frames through shared-memory rings set up over
their gRPC links; --shm=false keeps every frame on gRPC, as between hosts.
Reports the median time per operation after warm-up, algbw = bytes/time and
busbw = 2(n-1)/n × algbw (the nccl-tests definition); for lossy codecs also
the compression ratio and the relative L2 error of the result. Links are
authenticated as in a cluster (a ring key from a random token); --tls adds
mutual TLS, with --shm=false to keep every frame inside it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAllreduceBench(cmd.Context(), &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.register(cmd)

	var rf allreduceBenchFlags
	var rank int
	var addrs string
	rankCmd := &cobra.Command{
		Use:    "rank",
		Short:  "One rank of `bench allreduce` (started by it; listener on fd 3)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			go func() {
				// The parent holds our stdin open until it exits.
				io.Copy(io.Discard, cmd.InOrStdin())
				cancel()
			}()
			return runAllreduceRank(ctx, &rf, rank, strings.Split(addrs, ","), cmd.OutOrStdout())
		},
	}
	rf.register(rankCmd)
	rankCmd.Flags().IntVar(&rank, "rank", 0, "this process's rank")
	rankCmd.Flags().StringVar(&addrs, "addrs", "", "comma-separated addresses of all ranks")
	rankCmd.Flags().StringVar(&rf.tlsDir, "tls-dir", "", "directory of the ranks' certificates (with --tls)")
	cmd.AddCommand(rankCmd)
	return cmd
}

// parseSize reads "64MiB", "512KiB", "1GiB", "1MB" or a plain byte count.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSuffix(s, u.suffix)
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<40 {
		return 0, fmt.Errorf("bench allreduce: bad size %q", s)
	}
	return int64(v * float64(mult)), nil
}

func runAllreduceBench(ctx context.Context, f *allreduceBenchFlags, stdout, stderr io.Writer) error {
	size, err := parseSize(f.size)
	if err != nil {
		return err
	}
	if f.ranks < 1 || f.iters < 1 || f.warmup < 0 {
		return fmt.Errorf("bench allreduce: need --ranks >= 1 and --iters >= 1")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench allreduce: %w", err)
	}
	if f.tls {
		dir, err := os.MkdirTemp("", "ringtrain-bench-tls")
		if err != nil {
			return fmt.Errorf("bench allreduce: %w", err)
		}
		defer os.RemoveAll(dir)
		if err := writeBenchPKI(dir, f.ranks); err != nil {
			return fmt.Errorf("bench allreduce: %w", err)
		}
		f.tlsDir = dir
	}
	token := make([]byte, 16)
	crand.Read(token)
	env := append(os.Environ(), benchTokenEnv+"="+hex.EncodeToString(token))
	// The parent opens every listener, so addresses are known before any
	// rank starts; each rank inherits its own as fd 3.
	files := make([]*os.File, f.ranks)
	addrs := make([]string, f.ranks)
	for i := range files {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("bench allreduce: listen: %w", err)
		}
		addrs[i] = l.Addr().String()
		files[i], err = l.(*net.TCPListener).File()
		l.Close()
		if err != nil {
			return fmt.Errorf("bench allreduce: listener file: %w", err)
		}
	}
	defer func() {
		for _, fl := range files {
			fl.Close()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reports := make([]rankReport, f.ranks)
	errs := make([]error, f.ranks)
	var wg sync.WaitGroup
	for r := 0; r < f.ranks; r++ {
		args := append([]string{"bench", "allreduce", "rank", "--rank", strconv.Itoa(r), "--addrs", strings.Join(addrs, ",")}, f.args()...)
		c := exec.CommandContext(ctx, exe, args...)
		c.ExtraFiles = []*os.File{files[r]}
		c.Env = env
		c.Stderr = stderr
		// A rank stops when its stdin closes, i.e. when this process
		// exits, so no rank outlives the benchmark.
		if _, err := c.StdinPipe(); err != nil {
			return fmt.Errorf("bench allreduce: %w", err)
		}
		out, err := c.StdoutPipe()
		if err != nil {
			return fmt.Errorf("bench allreduce: %w", err)
		}
		if err := c.Start(); err != nil {
			return fmt.Errorf("bench allreduce: start rank %d: %w", r, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if err := json.Unmarshal(sc.Bytes(), &reports[r]); err != nil {
					errs[r] = fmt.Errorf("rank %d: bad report: %w", r, err)
				}
			}
			if err := c.Wait(); err != nil {
				errs[r] = fmt.Errorf("rank %d: %w", r, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench allreduce: %w", err)
	}
	res := summarize(f, size, reports)
	if f.jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	links := "gRPC"
	if f.shm {
		links = "gRPC and shared memory"
	}
	if f.tls {
		links += ", mutual TLS"
	}
	fmt.Fprintf(stdout, "all-reduce: %d ranks, %s (%d bytes) of float32, codec %s, %d iterations after %d warm-up; links: %s\n",
		res.Ranks, f.size, res.Bytes, res.Codec, res.Iters, f.warmup, links)
	fmt.Fprintf(stdout, "time per op: median %.2f ms (min %.2f, max %.2f)\n", res.MedianS*1e3, res.MinS*1e3, res.MaxS*1e3)
	fmt.Fprintf(stdout, "algbw %.3f GB/s, busbw %.3f GB/s (fp32 bytes; busbw = 2(n-1)/n × algbw)\n", res.AlgBWGBps, res.BusBWGBps)
	fmt.Fprintf(stdout, "compression ratio %.3f, relative L2 error of the sum %.3g\n", res.WireRatio, res.RelL2Error)
	return nil
}

// summarize takes, for each iteration, the slowest rank's time, and the
// median over iterations.
func summarize(f *allreduceBenchFlags, size int64, reports []rankReport) allreduceResult {
	res := allreduceResult{Ranks: f.ranks, Bytes: size / 4 * 4, Codec: f.codec, Iters: f.iters}
	times := make([]float64, f.iters)
	for _, r := range reports {
		for i, t := range r.Times {
			if i < len(times) && t > times[i] {
				times[i] = t
			}
		}
		res.RelL2Error = math.Max(res.RelL2Error, r.RelErr)
		res.WireRatio = r.WireRatio
	}
	res.TimesS = times
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	res.MinS, res.MaxS = sorted[0], sorted[len(sorted)-1]
	if n := len(sorted); n%2 == 1 {
		res.MedianS = sorted[n/2]
	} else {
		res.MedianS = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	if res.MedianS > 0 {
		res.AlgBWGBps = float64(res.Bytes) / res.MedianS / 1e9
		res.BusBWGBps = res.AlgBWGBps * 2 * float64(f.ranks-1) / float64(f.ranks)
	}
	return res
}

func fillBench(buf []float32, rank int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, uint64(rank)))
	for i := range buf {
		buf[i] = float32(r.NormFloat64())
	}
}

func runAllreduceRank(ctx context.Context, f *allreduceBenchFlags, rank int, addrs []string, stdout io.Writer) error {
	size, err := parseSize(f.size)
	if err != nil {
		return err
	}
	lf := os.NewFile(3, "listener")
	if lf == nil {
		return errors.New("bench allreduce rank: no listener on fd 3")
	}
	lis, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		return fmt.Errorf("bench allreduce rank: %w", err)
	}
	n := len(addrs)
	elems := int(size / 4)
	var codec allreduce.Codec
	var psgd *allreduce.PowerSGD
	if r, ok := strings.CutPrefix(f.codec, "powersgd-r"); ok {
		rk, err := strconv.Atoi(r)
		if err != nil {
			return fmt.Errorf("bench allreduce rank: bad codec %q", f.codec)
		}
		cols := 1024
		if elems%cols != 0 {
			return fmt.Errorf("bench allreduce rank: powersgd needs a size that is a multiple of %d floats", cols)
		}
		psgd, err = allreduce.NewPowerSGD(elems/cols, cols, rk, f.seed)
		if err != nil {
			return err
		}
		codec = allreduce.FP32{}
	} else {
		codec, err = allreduce.NewCodec(f.codec, 4*f.chunk)
		if err != nil {
			lis.Close()
			return err
		}
	}
	if cl, ok := codec.(io.Closer); ok {
		defer cl.Close()
	}
	cfg := allreduce.GRPCConfig{
		Rank: rank, Addrs: addrs, Listener: lis, Job: f.seed, Generation: 1,
		// Frames on shared-memory links carry fp32 whatever the codec.
		Timeout: f.timeout, Window: f.window, MaxFrame: max(codec.MaxEncodedLen(f.chunk), 4*f.chunk) + 1024,
		NoSharedMemory: !f.shm,
		RingKey:        allreduce.RingKey(os.Getenv(benchTokenEnv), f.seed, 1),
	}
	if f.tls {
		// As a cluster's workers: mutual TLS, each neighbour holding its
		// rank's certificate.
		cert, key := pki.Paths(f.tlsDir, benchIdentity(rank))
		ca, _ := pki.CAPaths(f.tlsDir)
		creds, err := pki.Load(cert, key, ca)
		if err != nil {
			return fmt.Errorf("bench allreduce rank: %w", err)
		}
		cfg.ServerTLS, cfg.ClientTLS = creds.ServerConfig(), creds.ClientConfig(pki.Want(pki.Worker, ""))
		cfg.CheckPeer = func(r int, cs tls.ConnectionState) error {
			id, err := pki.StateIdentity(cs)
			if err != nil {
				return err
			}
			return pki.Expect(id, pki.Worker, benchIdentity(r).Name)
		}
	}
	tr, err := allreduce.DialRing(ctx, cfg)
	if err != nil {
		return err
	}
	comm, err := allreduce.New(tr, allreduce.Config{Job: f.seed, Generation: 1, Codec: codec, Chunk: f.chunk})
	if err != nil {
		tr.Close()
		return err
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); comm.Run(runCtx) }()
	defer func() {
		stopRun()
		<-runDone
		comm.Close()
	}()

	template := make([]float32, elems)
	fillBench(template, rank, f.seed)
	if f.cpuProf != "" {
		if err := os.MkdirAll(f.cpuProf, 0o755); err != nil {
			return fmt.Errorf("bench allreduce rank: %w", err)
		}
		pf, err := os.Create(filepath.Join(f.cpuProf, fmt.Sprintf("rank-%d.prof", rank)))
		if err != nil {
			return fmt.Errorf("bench allreduce rank: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("bench allreduce rank: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	buf := make([]float32, elems)
	rep := rankReport{Rank: rank}
	for it := 0; it < f.warmup+f.iters; it++ {
		copy(buf, template)
		if err := comm.Barrier(ctx); err != nil {
			return err
		}
		t0 := time.Now()
		if psgd != nil {
			err = psgd.AllReduce(ctx, comm, buf)
		} else {
			err = comm.AllReduce(ctx, buf)
		}
		d := time.Since(t0)
		if err != nil {
			return err
		}
		if it >= f.warmup {
			rep.Times = append(rep.Times, d.Seconds())
		}
	}
	// Quality of the last result against the exact sum, and the codec's
	// compression of this rank's data.
	want := make([]float64, elems)
	tmp := make([]float32, elems)
	for r := 0; r < n; r++ {
		fillBench(tmp, r, f.seed)
		for i, v := range tmp {
			want[i] += float64(v)
		}
	}
	var num, den float64
	for i, v := range buf {
		d := float64(v) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den > 0 {
		rep.RelErr = math.Sqrt(num / den)
	}
	if psgd != nil {
		rep.WireRatio = psgd.CompressionRatio()
	} else {
		enc := codec.AppendEncode(nil, template[:min(elems, f.chunk)])
		if len(enc) > 0 {
			rep.WireRatio = float64(4*min(elems, f.chunk)) / float64(len(enc))
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

// writeBenchPKI makes an authority in dir and a worker certificate for
// each rank (r0, r1, ...), as a cluster's 'ringtrain pki' would.
func writeBenchPKI(dir string, ranks int) error {
	if err := pki.Init(dir, "ringtrain bench CA", 24*time.Hour); err != nil {
		return err
	}
	for r := range ranks {
		if _, _, err := pki.Issue(dir, benchIdentity(r), []string{"127.0.0.1"}, 24*time.Hour); err != nil {
			return err
		}
	}
	return nil
}

func benchIdentity(rank int) pki.Identity {
	return pki.Identity{Role: pki.Worker, Name: "r" + strconv.Itoa(rank)}
}
