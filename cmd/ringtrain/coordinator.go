package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/worker"
)

func newCoordinatorCmd() *cobra.Command {
	var (
		p           processFlags
		endpoints   string
		file        string
		exitWhenEnd bool
	)
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator of a training cluster",
		Long: `Run a coordinator of a training cluster.

Coordinators of a job campaign for its leadership in etcd; the leader admits
workers (join token and job hash), turns membership changes into generations
of the ring, shards each epoch, and commits the checkpoints the workers write
to the shared store. Run two for a standby that takes over from etcd. Only the
leader answers /readyz with 200, so a Service in front of them reaches it.`,
		Example: `  RINGTRAIN_JOIN_TOKEN=secret ringtrain coordinator --etcd-endpoints http://etcd:2379 -f job.yaml --store /shared/checkpoints`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f/--job is required")
			}
			spec, err := job.Load(file)
			if err != nil {
				return err
			}
			eps := splitList(endpoints)
			if len(eps) == 0 {
				return errors.New("--etcd-endpoints is required")
			}
			if p.store == "" {
				return errors.New("--store is required")
			}
			token, err := p.token()
			if err != nil {
				return err
			}
			host, err := p.advertiseHost()
			if err != nil {
				return err
			}
			serverTLS, _, err := p.tlsConfigs()
			if err != nil {
				return err
			}
			cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return fmt.Errorf("etcd: %w", err)
			}
			defer cli.Close()
			logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "%s\n", fmt.Sprintf(f, a...)) }
			proc, err := coordinator.Listen(coordinator.ProcessConfig{
				Server: coordinator.ServerConfig{
					Name: p.name, Spec: spec, CheckJob: worker.CheckJob, Token: token, Etcd: cli, StoreDir: p.store, Logf: logf,
				},
				Listen: p.listen, Gossip: p.gossip, HTTP: p.http, Advertise: host, TLS: serverTLS,
			})
			if err != nil {
				return err
			}
			logf("coordinator %s: control %s, gossip %s, job %s (%s)", p.name, proc.ControlAddr(), proc.GossipAddr(), coordinator.JobName(spec), spec.Hash())
			return runCoordinator(cmd.Context(), proc, exitWhenEnd)
		},
	}
	f := cmd.Flags()
	p.register(f, ":7070", "control-plane gRPC address: workers and 'ringtrain status' connect here")
	f.StringVar(&endpoints, "etcd-endpoints", "", "etcd client URLs, comma-separated")
	f.StringVarP(&file, "job", "f", "", "job file (YAML)")
	f.StringVar(&p.store, "store", "", "checkpoint store directory (a volume every worker mounts at the same path)")
	f.BoolVar(&exitWhenEnd, "exit-when-done", false, "exit once the job is complete (default: keep serving status)")
	return cmd
}

// runCoordinator runs proc until ctx ends (nil), the server fails, or,
// with exitWhenDone, the job is complete.
func runCoordinator(ctx context.Context, proc *coordinator.Process, exitWhenDone bool) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- proc.Run(rctx) }()
	done := proc.Server().Done()
	if !exitWhenDone {
		done = nil
	}
	select {
	case <-ctx.Done():
	case <-done:
		// Let the workers hear Stop before the control plane goes away.
		time.Sleep(time.Second)
	case err := <-runErr:
		return err
	}
	cancel()
	return <-runErr
}
