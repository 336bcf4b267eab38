package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
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
		onComplete    string
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

With --on-complete=wait it stays up once the job is complete (or when it
joins a job that already is), instead: it logs once that the job is
complete and where its final checkpoint and model are, keeps serving
/healthz, and exits 0 on SIGTERM or SIGINT. A pod of a StatefulSet, which
is started again whenever it exits, runs it so.

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
			if onComplete != onCompleteExit && onComplete != onCompleteWait {
				return fmt.Errorf("--on-complete %q: want %s or %s", onComplete, onCompleteExit, onCompleteWait)
			}
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
					return volumeHint(err)
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
			ctx := cmd.Context()
			if err := w.Run(ctx); err != nil || ctx.Err() != nil || onComplete == onCompleteExit {
				return volumeHint(err)
			}
			// The job is complete: say where its results are, once, and
			// stay up until told to stop.
			sctx, cancel := context.WithTimeout(api.WithToken(ctx, token), 10*time.Second)
			st, err := fetchStatus(sctx, coords, dialOption(creds), 3*time.Second)
			cancel()
			if err != nil {
				st = nil
			}
			o.Logf("%s; waiting for SIGTERM or SIGINT (--on-complete=wait)", completeMessage(w.StoreDir(), st))
			<-ctx.Done()
			return nil
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
	f.StringVar(&onComplete, "on-complete", onCompleteExit, "once the job is complete: exit (status 0), or wait: log where the final checkpoint and model are and stay up, serving /healthz, until SIGTERM or SIGINT (for a StatefulSet, which restarts a pod that exits)")
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

// What a worker does once the job is complete (--on-complete).
const (
	onCompleteExit = "exit"
	onCompleteWait = "wait"
)

// completeMessage says where a complete job's results are, as a worker
// knows them: its final checkpoint (st.LastCheckpoint, when the
// coordinator's status st answered) in the job's store at storeDir, and
// the final model, which the leading coordinator writes to its run
// directory: run/ beside the store root unless its --out names another.
func completeMessage(storeDir string, st *api.StatusReply) string {
	msg := "the job is complete"
	switch {
	case storeDir == "":
		return msg
	case st != nil && st.LastCheckpoint != "":
		msg += fmt.Sprintf(": its final checkpoint is %s in %s", st.LastCheckpoint, storeDir)
	default:
		msg += fmt.Sprintf(": its checkpoints are in %s", storeDir)
	}
	runDir := filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(storeDir))), "run")
	return msg + fmt.Sprintf("; the coordinator writes the final model to its run directory (--out; by default %s)",
		filepath.Join(runDir, checkpoint.ModelFile))
}

// prepareVolume is the section of deploy/README.md on making the shared
// volume writable for the pods' user.
const prepareVolume = `deploy/README.md, "Prepare the shared volume"`

// volumeHint adds to an error that is a refused permission on a file or
// directory (creating /shared/checkpoints on a volume owned by root, say)
// which user was refused and what to do: NFS and EFS volumes ignore the
// pods' fsGroup, so the volume must be made writable for the pods' UID
// once. Other errors, and nil, are returned as they are.
func volumeHint(err error) error {
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrPermission) || !errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%w (this process runs as UID %d, GID %d, which may not write %s or, creating it, the directory it goes in: "+
		"make them writable for UID %d; a shared volume on Kubernetes must be prepared so once, as NFS and EFS ignore the pods' fsGroup: see %s)",
		err, os.Getuid(), os.Getgid(), pe.Path, os.Getuid(), prepareVolume)
}
