package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/runlog"
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
			if err := worker.CheckJob(spec); err != nil {
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
			c, err := startCoordinator(cmd.Context(), coordinatorSetup{
				name: p.name, spec: spec, token: token, etcd: cli, storeDir: p.store,
				listen: p.listen, gossip: p.gossip, http: p.http, advertise: host, serverTLS: serverTLS, logf: logf,
			})
			if err != nil {
				return err
			}
			logf("coordinator %s: control %s, gossip %s, job %s (%s)", p.name, c.controlAddr, c.gossipAddr, coordinator.JobName(spec), spec.Hash())
			return c.wait(cmd.Context(), exitWhenEnd)
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

// coordinatorSetup is what a coordinator process needs.
type coordinatorSetup struct {
	name, token                     string
	spec                            job.Spec
	etcd                            *clientv3.Client
	storeDir                        string
	listen, gossip, http, advertise string
	serverTLS                       *tls.Config
	runLog                          *runlog.Log
	logf                            func(string, ...any)
}

// runningCoordinator is a started coordinator: its server, listeners and
// the goroutine running it.
type runningCoordinator struct {
	srv         *coordinator.Server
	grpcSrv     *grpc.Server
	member      *membership.Member
	controlAddr string
	gossipAddr  string
	httpAddr    string
	cancel      context.CancelFunc
	runErr      chan error
}

// startCoordinator opens the store, joins gossip, listens and starts the
// server's Run.
func startCoordinator(ctx context.Context, cs coordinatorSetup) (*runningCoordinator, error) {
	store, err := checkpoint.Open(cs.storeDir)
	if err != nil {
		return nil, err
	}
	samples, err := dataset.TrainSamples(cs.spec.Dataset, cs.spec.TrainLimit)
	if err != nil {
		return nil, err
	}
	member, err := membership.Start(membership.Config{
		Name: cs.name, Bind: cs.gossip, Advertise: cs.advertise, Secret: cs.token, Meta: []byte("coordinator"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cs.listen)
	if err != nil {
		member.Shutdown()
		return nil, fmt.Errorf("--listen: %w", err)
	}
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		Name: cs.name, Spec: cs.spec, Token: cs.token, Etcd: cs.etcd, Store: store, Samples: samples,
		Gossip: member, GossipAddr: member.Addr(), RunLog: cs.runLog, Logf: cs.logf,
	})
	if err != nil {
		ln.Close()
		member.Shutdown()
		return nil, err
	}
	var opts []grpc.ServerOption
	if cs.serverTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cs.serverTLS)))
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	go g.Serve(ln)
	rctx, cancel := context.WithCancel(ctx)
	c := &runningCoordinator{srv: srv, grpcSrv: g, member: member, controlAddr: ln.Addr().String(),
		gossipAddr: member.Addr(), cancel: cancel, runErr: make(chan error, 1)}
	if c.httpAddr, err = serveHTTP(rctx, cs.http, srv.HTTPHandler()); err != nil {
		cancel()
		g.Stop()
		member.Shutdown()
		return nil, err
	}
	go func() { c.runErr <- srv.Run(rctx) }()
	return c, nil
}

// wait runs until ctx ends (nil), the server fails, or, with exitWhenDone,
// the job is complete; then it stops everything.
func (c *runningCoordinator) wait(ctx context.Context, exitWhenDone bool) error {
	done := c.srv.Done()
	if !exitWhenDone {
		done = nil
	}
	var err error
	select {
	case <-ctx.Done():
	case <-done:
		// Let the workers hear Stop before the control plane goes away.
		time.Sleep(time.Second)
	case err = <-c.runErr:
		c.runErr <- err
	}
	return errors.Join(err, c.stop())
}

// stop ends Run (resigning leadership), the gRPC server and gossip.
func (c *runningCoordinator) stop() error {
	c.cancel()
	err := <-c.runErr
	c.grpcSrv.Stop()
	c.member.Leave(time.Second)
	return err
}
