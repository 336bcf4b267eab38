package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/pki"
	"github.com/ringtrain/ringtrain/worker"
)

func newWorkerCmd() *cobra.Command {
	var (
		p             processFlags
		coordinators  string
		file          string
		dataDir       string
		threads       int
		shm           bool
		advertisePort int
		timelineDir   string
		sampleLog     string
		joinTimeout   time.Duration
		fileTimeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker of a training cluster",
		Long: `Run a worker of a training cluster.

The worker joins the job at --coordinator (a comma-separated list when there
are standby coordinators) with the join token, trains its shard of each epoch
in lock step with the other workers (gradients summed by ring all-reduce),
writes its shard of every checkpoint to the shared store, and exits when the
job is complete. SIGTERM makes it leave the job at once; the others carry on.

Until it joins, the worker waits for a coordinator that refuses connections
or times out (one that is not up yet), saying so every 30s; --join-timeout
bounds the wait. An address that can never work ends it at once: one
without a port, a host DNS says does not exist, or a server that is not a
ringtrain coordinator (an HTTP server such as a coordinator's --http, or
another gRPC server such as etcd).

The join token (--token-file or $RINGTRAIN_JOIN_TOKEN) must be at least 16
bytes and not a placeholder: make one with head -c 32 /dev/urandom | base64.`,
		Example: `  head -c 32 /dev/urandom | base64 > join-token
  ringtrain worker --token-file join-token --coordinator coordinator:7070 --name worker-0 --advertise 10.0.0.5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := p.token()
			if err != nil {
				return err
			}
			host, err := p.advertiseHost()
			if err != nil {
				return err
			}
			dataAddr, err := advertisedData(host, p.listen, advertisePort)
			if err != nil {
				return err
			}
			creds, err := p.creds(pki.Worker)
			if err != nil {
				return err
			}
			if creds == nil {
				if err := p.plaintextOK("--listen", p.listen); err != nil {
					return err
				}
			}
			coords := splitList(coordinators)
			if len(coords) == 0 {
				return fmt.Errorf("--coordinator is required")
			}
			o := worker.ClusterOptions{
				Name: p.name, Coordinators: coords, Token: token,
				DataListen: p.listen, DataAdvertise: dataAddr,
				GossipBind: p.gossip, GossipAdvertise: host,
				StoreDir: p.store, DataDir: dataDir, Threads: threads,
				ControlDial:    []grpc.DialOption{dialOption(creds)},
				NoSharedMemory: !shm, JoinTimeout: joinTimeout, FileTimeout: fileTimeout,
				TimelineDir: timelineDir,
				Logf:        func(f string, a ...any) { fmt.Fprintf(os.Stderr, "%s: %s\n", p.name, fmt.Sprintf(f, a...)) },
			}
			if sampleLog != "" {
				f, err := openSampleLog(sampleLog)
				if err != nil {
					return err
				}
				defer f.Close()
				o.SampleLog = f
			}
			if file != "" {
				s, err := job.Load(file)
				if err != nil {
					return err
				}
				if err := worker.CheckJob(s); err != nil {
					return err
				}
				o.Spec = &s
			}
			if creds != nil {
				// Ring links: mutual TLS, and each neighbour holds the
				// certificate of the worker the ring names at its rank.
				o.ServerTLS, o.ClientTLS = creds.ServerConfig(), creds.ClientConfig(pki.Want(pki.Worker, ""))
				o.CheckRingPeer = func(name string, cs tls.ConnectionState) error {
					id, err := pki.StateIdentity(cs)
					if err != nil {
						return err
					}
					return pki.Expect(id, pki.Worker, name)
				}
			}
			w, err := worker.NewClusterWorker(o)
			if err != nil {
				return err
			}
			httpAddr, err := serveHTTP(cmd.Context(), p.http, w.Handler())
			if err != nil {
				return err
			}
			if httpAddr != "" {
				w.SetHTTPAddr(httpAddr)
			}
			return w.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	p.register(f, ":7080", "all-reduce address: ring neighbours connect here")
	f.StringVar(&coordinators, "coordinator", "", "coordinator control address(es), HOST:PORT[,HOST:PORT]")
	f.StringVarP(&file, "job", "f", "", "job file: refuse to join a coordinator running another job")
	f.StringVar(&p.store, "store", "", "checkpoint store root, as the coordinators' --store is mounted here (default: the job's store the coordinator advertises)")
	f.StringVar(&dataDir, "data-dir", "", "data set directory (default: the job's data_dir, else the user cache)")
	f.IntVar(&threads, "threads", 0, "compute threads (default: the job's threads, else all cores)")
	f.StringVar(&sampleLog, "sample-log", "", "append the sample indices of every step this worker takes to FILE, one line a step (for checking a run's data order); off when empty")
	f.StringVar(&timelineDir, "timeline", "", "record the step timeline in DIR/<name>.jsonl (a shared volume; 'ringtrain trace --dir DIR' reads it); off when empty")
	f.DurationVar(&fileTimeout, "file-timeout", 0, "bound on each blocking file operation of training: a checkpoint shard write that takes longer is skipped, a checkpoint load over ten times this fails the worker (0: 9s, the coordinator's default --stuck-after; negative: no bound)")
	f.DurationVar(&joinTimeout, "join-timeout", 0, "give up when no coordinator admits this worker within this long (0: wait on, as a Kubernetes pod should)")
	f.IntVar(&advertisePort, "advertise-port", 0, "the port other processes dial to reach this one's data listener, e.g. behind a port mapping (default: the --listen port)")
	f.BoolVar(&shm, "shm", true, "exchange gradients with ring neighbours on this host through shared memory (/dev/shm); false keeps them on gRPC")
	return cmd
}

// openSampleLog opens a worker's sample log for appending (a restarted
// worker continues its predecessor's), creating its directory.
func openSampleLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--sample-log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--sample-log: %w", err)
	}
	return f, nil
}
