package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/pki"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/worker"
)

func newCoordinatorCmd() *cobra.Command {
	var (
		p           processFlags
		endpoints   string
		file        string
		exitWhenEnd bool
		out         string
		replaceJob  bool
		deadAfter   time.Duration
		stuckAfter  time.Duration
		statusFile  string
	)
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator of a training cluster",
		Long: `Run a coordinator of a training cluster.

Coordinators of a job campaign for its leadership in etcd; the leader admits
workers (join token and job hash), turns membership changes into generations
of the ring, shards each epoch, and commits the checkpoints the workers write
to the shared store. Run two for a standby that takes over from etcd. Only the
leader answers /readyz with 200, so a Service in front of them reaches it.

The job's checkpoints are in its own directory under --store, named after the
job (/shared/checkpoints/<job name>/), so jobs may share a store: one whose
directory holds the checkpoints of another job of that name (another hash) is
refused at start. Standbys remove nothing from the store; the leader removes
its own unfinished writes, and the checkpoints retention drops.

The run directory (--out; default: run/ beside the store, e.g. /shared/run for
--store /shared/checkpoints) receives what 'ringtrain train' leaves: the
leader keeps metrics.jsonl there while the job runs, and when the job is
complete writes summary.json, curves.png and model.safetensors (the final
model, its workers' shards merged, PyTorch state_dict names). Coordinators of
a job may share it; only the leader writes.

The --http listener also serves the job's live, read-only dashboard at /
(curves, the ring and its workers, the generations with their causes, the
committed checkpoints, the job file). It listens where --http says: all
interfaces for the default :8080, which Kubernetes probes need; give
--http 127.0.0.1:8080 to keep it to this machine.

A job's state in etcd is keyed by the job's name. A coordinator whose job
file has another hash than the job etcd holds under that name refuses to
start; --replace-job starts the new job over instead, clearing the old
job's state and committed checkpoints from etcd (their files stay in the
store). A coordinator whose store holds none of the checkpoints etcd lists
as committed exits, naming them and the store: --store is not the volume
the workers wrote to, or the files are gone.

The join token (--token-file or $RINGTRAIN_JOIN_TOKEN) must be at least 16
bytes and not a placeholder: make one with head -c 32 /dev/urandom | base64.

The job's status ('ringtrain status', /status) and the dashboard are told
only to callers that show the join token or the status token
(--status-token-file: it reads the status and cannot join), as a bearer
token; a browser opens the dashboard once as /?token=TOKEN and keeps a
cookie. An --http listener on a loopback address serves them without a
token. /healthz, /readyz and /metrics are always open.`,
		Example: `  head -c 32 /dev/urandom | base64 > join-token
  ringtrain coordinator --token-file join-token --etcd-endpoints http://etcd:2379 -f job.yaml --store /shared/checkpoints`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f/--job is required")
			}
			spec, err := job.Load(file)
			if err != nil {
				return err
			}
			if p.store == "" {
				return errors.New("--store is required")
			}
			if out == "" {
				out = filepath.Join(filepath.Dir(filepath.Clean(p.store)), "run")
			}
			token, err := p.token()
			if err != nil {
				return err
			}
			var statusToken string
			if statusFile != "" {
				if statusToken, err = readToken(statusFile, "status token"); err != nil {
					return err
				}
			}
			host, err := p.advertiseHost()
			if err != nil {
				return err
			}
			creds, err := p.creds(pki.Coordinator)
			if err != nil {
				return err
			}
			var serverTLS *tls.Config
			if creds != nil {
				serverTLS = creds.ServerConfig()
			} else if err := p.plaintextOK("--listen", p.listen); err != nil {
				return err
			}
			cli, err := p.etcdClient(endpoints, creds, 5*time.Second)
			if err != nil {
				return err
			}
			defer cli.Close()
			logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "%s\n", fmt.Sprintf(f, a...)) }
			proc, err := coordinator.Listen(coordinator.ProcessConfig{
				Server: coordinator.ServerConfig{
					Name: p.name, Spec: spec, CheckJob: worker.CheckJob, Token: token, Etcd: cli, StoreDir: p.store, RunDir: out,
					ReplaceJob: replaceJob, StatusToken: statusToken, Logf: logf,
					DeadAfter: deadAfter, StuckAfter: stuckAfter,
				},
				Listen: p.listen, Gossip: p.gossip, HTTP: p.http, Advertise: host, TLS: serverTLS,
			})
			if err != nil {
				return volumeHint(err) // the job's store under --store, on a volume it may not write
			}
			logf("coordinator %s: control %s, gossip %s, job %s (%s), run directory %s",
				p.name, proc.ControlAddr(), proc.GossipAddr(), coordinator.JobName(spec), spec.Hash(), out)
			return runCoordinator(cmd.Context(), proc, exitWhenEnd, logf)
		},
	}
	f := cmd.Flags()
	p.register(f, ":7070", "control-plane gRPC address: workers and 'ringtrain status' connect here")
	f.Lookup("http").Usage = "HTTP address serving /healthz, /readyz, /metrics, /status and the job's read-only dashboard at / (empty: none; binds what it names: all interfaces for :8080; /status and the dashboard need a token unless bound to loopback)"
	f.StringVar(&statusFile, "status-token-file", "", "file holding a status token: it reads the status and the dashboard and cannot join (default: none; the join token always reads them)")
	f.StringVar(&endpoints, "etcd-endpoints", "", "etcd client URLs, comma-separated")
	f.StringVarP(&file, "job", "f", "", "job file (YAML)")
	f.StringVar(&p.store, "store", "", "checkpoint store root (a volume every worker mounts at the same path); the job's store is its subdirectory named after the job")
	f.BoolVar(&replaceJob, "replace-job", false, "when etcd holds another job (another job hash) under this job's name, clear its etcd state and start this job over (default: refuse to start)")
	f.DurationVar(&deadAfter, "dead-after", coordinator.DefaultDeadAfter, "declare a worker dead when it has not heartbeaten for this long")
	f.DurationVar(&stuckAfter, "stuck-after", coordinator.DefaultStuckAfter, "evict a worker that heartbeats but has not reached the current ring within this long (a hung file system, a blocked load); it may join again later")
	f.BoolVar(&exitWhenEnd, "exit-when-done", false, "exit once the job is complete (default: keep serving status)")
	f.StringVar(&out, "out", "", "run directory: metrics.jsonl, and summary.json, curves.png and model.safetensors once the job is complete (default: run/ beside --store)")
	return cmd
}

// runCoordinator runs proc until ctx ends (nil), the server fails, or,
// with exitWhenDone, the job is complete. When the job is complete, the
// run directory gets its products (Server.WriteRunProducts).
func runCoordinator(ctx context.Context, proc *coordinator.Process, exitWhenDone bool, logf func(string, ...any)) error {
	launch := time.Now()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- proc.Run(rctx) }()
	srv := proc.Server()
	done := srv.Done()
	for {
		select {
		case <-ctx.Done():
			cancel()
			return <-runErr
		case err := <-runErr:
			return err
		case <-done:
			done = nil
			st := srv.StatusReply()
			sum := runlog.Summary{WallSeconds: time.Since(launch).Seconds(), ImagesPerSecond: st.ImagesPerSecond, Checkpoint: st.LastCheckpoint}
			if _, err := srv.WriteRunProducts(sum, time.Time{}); err != nil {
				logf("coordinator: warning: run products: %v", volumeHint(err))
			} else {
				logf("coordinator: the job is complete; its run products are in %s", srv.RunDir())
			}
			if exitWhenDone {
				// Let the workers hear Stop before the control plane goes away.
				time.Sleep(time.Second)
				cancel()
				return <-runErr
			}
		}
	}
}
