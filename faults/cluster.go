package faults

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/etcdlocal"
	"github.com/ringtrain/ringtrain/localcluster"
)

// process is one process of the cluster, restartable with the same
// arguments (and so the same addresses and data directory).
type process struct {
	name string
	bin  string
	args []string
	env  []string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
	// held: a fault took the process down and restarts it itself; failed:
	// it exited by itself with an error.
	held, failed bool
}

// hold marks the process as down by a fault (true) or back (false).
func (p *process) hold(h bool) {
	p.mu.Lock()
	p.held = h
	p.mu.Unlock()
}

// crashed reports whether the process exited by itself with an error and
// no fault holds it down: Kubernetes would restart it.
func (p *process) crashed() bool {
	if p.running() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed && !p.held
}

// start starts the process, its output appended to its log.
func (p *process) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("faults: starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.paused, p.failed = cmd, done, false, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.failed = err != nil
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// running reports whether the process was started and has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// exited returns a channel closed once the process has exited (closed at
// once when it never started).
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// kill SIGKILLs the process and waits for it to exit; false when it was
// not running.
func (p *process) kill() bool {
	if !p.running() {
		return false
	}
	p.mu.Lock()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.mu.Unlock()
	<-p.exited()
	return true
}

// pause SIGSTOPs (stop) or SIGCONTs (!stop) the process; false when it was
// not running.
func (p *process) pause(stop bool) bool {
	if !p.running() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	p.paused = stop
	return p.cmd.Process.Signal(sig) == nil
}

// cluster is one schedule's processes: etcd members, coordinators (each
// reaching every member through its own proxies) and workers.
type cluster struct {
	cfg     Config
	dir     string
	token   string
	jobFile string
	store   string // the coordinators' --store

	etcd    []*process
	etcdURL []url.URL
	coords  []*process
	coordAt []string
	proxies map[string][]*Proxy // coordinator → its proxy to each member; worker → the one in front of its data listener
	workers []*process
	tmpfs   bool // store is a tmpfs this cluster mounted
}

func loopback() (string, error) {
	port, err := localcluster.FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

// newCluster lays out a cluster of shape in dir: addresses, proxies (not
// yet running), arguments. Nothing starts. With links, every worker's
// ring links go through a proxy of its own (it advertises the proxy's
// port, and keeps off shared memory).
func newCluster(cfg Config, dir, token, jobFile string, links bool) (*cluster, error) {
	c := &cluster{cfg: cfg, dir: dir, token: token, jobFile: jobFile, store: filepath.Join(dir, "store"), proxies: map[string][]*Proxy{}}
	sh := cfg.Shape
	var peers []string
	var peerURLs []url.URL
	for i := range sh.EtcdMembers {
		cu, err := etcdlocal.FreeLoopbackURL()
		if err != nil {
			return nil, err
		}
		pu, err := etcdlocal.FreeLoopbackURL()
		if err != nil {
			return nil, err
		}
		c.etcdURL, peerURLs = append(c.etcdURL, cu), append(peerURLs, pu)
		peers = append(peers, fmt.Sprintf("e%d=%s", i, pu.String()))
	}
	for i := range sh.EtcdMembers {
		name := fmt.Sprintf("etcd-%d", i)
		c.etcd = append(c.etcd, &process{name: name, bin: cfg.Etcd, log: filepath.Join(dir, name+".log"), args: []string{
			"--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", c.etcdURL[i].String(), "--advertise-client-urls", c.etcdURL[i].String(),
			"--listen-peer-urls", peerURLs[i].String(), "--initial-advertise-peer-urls", peerURLs[i].String(),
			"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new", "--log-level", "error"}})
	}
	env := []string{localcluster.TokenEnv + "=" + token}
	for i := range sh.Coordinators {
		name := fmt.Sprintf("coordinator-%d", i)
		addr, err := loopback()
		if err != nil {
			return nil, err
		}
		var eps []string
		for _, u := range c.etcdURL {
			p, err := NewProxy(u.Host)
			if err != nil {
				return nil, err
			}
			c.proxies[name] = append(c.proxies[name], p)
			eps = append(eps, "http://"+p.Addr())
		}
		gossip, err := loopback()
		if err != nil {
			return nil, err
		}
		c.coordAt = append(c.coordAt, addr)
		c.coords = append(c.coords, &process{name: name, bin: cfg.Exe, env: env, log: filepath.Join(dir, name+".log"), args: []string{
			"coordinator", "--etcd-endpoints", strings.Join(eps, ","), "-f", jobFile, "--name", name,
			"--listen", addr, "--gossip", gossip, "--http", "", "--advertise", "127.0.0.1",
			"--store", c.store, "--out", filepath.Join(dir, "run")}})
	}
	for i := range sh.Workers {
		name := fmt.Sprintf("worker-%d", i)
		addr, err := loopback()
		if err != nil {
			return nil, err
		}
		gossip, err := loopback()
		if err != nil {
			return nil, err
		}
		args := []string{"worker", "--coordinator", strings.Join(c.coordAt, ","), "--name", name,
			"--listen", addr, "--gossip", gossip, "--http", "", "--advertise", "127.0.0.1",
			"--data-dir", cfg.DataDir, "--threads", "1"}
		if links {
			p, err := NewProxy(addr)
			if err != nil {
				return nil, err
			}
			c.proxies[name] = []*Proxy{p}
			args = append(args, "--advertise-port", p.Addr()[strings.LastIndex(p.Addr(), ":")+1:], "--shm=false")
		}
		c.workers = append(c.workers, &process{name: name, bin: cfg.Exe, env: env, log: filepath.Join(dir, name+".log"), args: args})
	}
	return c, nil
}

// all returns every process: etcd members, coordinators, workers.
func (c *cluster) all() []*process {
	var ps []*process
	ps = append(ps, c.etcd...)
	ps = append(ps, c.coords...)
	return append(ps, c.workers...)
}

func (c *cluster) byName(name string) *process {
	for _, p := range c.all() {
		if p.name == name {
			return p
		}
	}
	return nil
}

// etcdClient is a client of every member, directly.
func (c *cluster) etcdClient() (*clientv3.Client, error) {
	var eps []string
	for _, u := range c.etcdURL {
		eps = append(eps, u.String())
	}
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

// startEtcd starts every member not running and waits until the cluster
// answers a read (a quorum is up).
func (c *cluster) startEtcd(ctx context.Context) error {
	for _, p := range c.etcd {
		if !p.running() {
			if err := p.start(); err != nil {
				return err
			}
		}
	}
	cli, err := c.etcdClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("faults: etcd did not start: %w (logs in %s)", err, c.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// status asks the coordinators for the leader's status.
func (c *cluster) status(ctx context.Context) (*api.StatusReply, error) {
	return c.cfg.Status(ctx, c.coordAt, c.token)
}

// waitStatus polls the status until cond holds or timeout passes.
func (c *cluster) waitStatus(ctx context.Context, what string, timeout time.Duration, cond func(*api.StatusReply) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.status(ctx)
		if err == nil && cond(st) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("faults: no %s after %v (last status %+v, error %v; logs in %s)", what, timeout, st, err, c.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start starts etcd, coordinator-0 (waiting until it leads, so that it is
// the first leader), the other coordinators, and the workers.
func (c *cluster) start(ctx context.Context) error {
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.coords[0].start(); err != nil {
		return err
	}
	if err := c.waitStatus(ctx, c.coords[0].name+" leading", time.Minute, func(st *api.StatusReply) bool {
		return st.Coordinator == c.coords[0].name && st.State != "standby"
	}); err != nil {
		return err
	}
	for _, p := range c.coords[1:] {
		if err := p.start(); err != nil {
			return err
		}
	}
	for _, p := range c.workers {
		if err := p.start(); err != nil {
			return err
		}
	}
	return nil
}

// restartAll starts whatever is not running: etcd first, then
// coordinators, then workers.
func (c *cluster) restartAll(ctx context.Context) error {
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	for _, p := range append(append([]*process{}, c.coords...), c.workers...) {
		if !p.running() {
			if err := p.start(); err != nil {
				return err
			}
		}
	}
	return nil
}

// supervise restarts, every second until ctx ends, each process that
// exited by itself with an error (a worker that could not bind its port,
// a coordinator that gave up on etcd), as Kubernetes restarts a failed
// container; what a fault took down, the fault restarts.
func (c *cluster) supervise(ctx context.Context) {
	for wait(ctx, time.Second) {
		for _, p := range c.all() {
			if p.crashed() {
				c.cfg.logf("faults: %s exited with an error; restarting it (see %s)", p.name, p.log)
				if err := p.start(); err != nil {
					c.cfg.logf("faults: restarting %s: %v", p.name, err)
				}
			}
		}
	}
}

// stop kills every process, stops the proxies' links and unmounts the
// store's tmpfs.
func (c *cluster) stop() {
	for _, p := range c.all() {
		p.pause(false)
		p.kill()
	}
	if c.tmpfs {
		if err := syscall.Unmount(c.store, 0); err != nil {
			c.cfg.logf("faults: unmounting %s: %v", c.store, err)
		}
	}
}

// mountStore mounts a tmpfs of size bytes as the checkpoint store (root
// only), so that a disk-full fault fills a file system of its own.
func (c *cluster) mountStore(size int64) error {
	if err := os.MkdirAll(c.store, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", c.store, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		return fmt.Errorf("faults: mounting a tmpfs for the store: %w", err)
	}
	c.tmpfs = true
	return nil
}

// fill writes a filler file into the store until its file system is full.
func (c *cluster) fill() (string, error) {
	f, err := os.CreateTemp(c.store, "filler")
	if err != nil {
		return "", err
	}
	path := f.Name()
	defer f.Close()
	// Big writes until one fails, then small ones for the tail.
	buf := make([]byte, 1<<20)
	for size := len(buf); ; {
		if _, err := f.Write(buf[:size]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return path, err
			}
			if size == 512 {
				return path, nil
			}
			size = 512
		}
	}
}
