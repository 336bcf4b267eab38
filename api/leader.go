package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// LeaderClient calls a job's coordinators, following the leader: only
// the leader serves the control plane, and a standby answers Unavailable.
type LeaderClient struct {
	addrs   []string
	conns   []*grpc.ClientConn
	clients []*ControlClient
	timeout time.Duration

	mu  sync.Mutex
	cur int // the coordinator that answered last
}

// reconnect is how a coordinator's connection is re-tried while it
// fails: gRPC's default backoff grows to 2 minutes, which would keep a
// worker from noticing a coordinator that has come up for that long.
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
	MinConnectTimeout: 20 * time.Second,
}

// NewLeaderClient returns a client of the coordinators at addrs
// (host:port; CheckAddress). Each call to one coordinator is bounded by
// timeout. opts are the dial options (default: plaintext). Connections are
// made lazily: nothing is dialled until the first Call.
func NewLeaderClient(addrs []string, timeout time.Duration, opts ...grpc.DialOption) (*LeaderClient, error) {
	if len(addrs) == 0 {
		return nil, errors.New("api: no coordinator address")
	}
	for _, a := range addrs {
		if err := CheckAddress(a); err != nil {
			return nil, fmt.Errorf("api: coordinator address %w", err)
		}
	}
	c := &LeaderClient{addrs: addrs, timeout: timeout}
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	opts = append([]grpc.DialOption{grpc.WithConnectParams(reconnect)}, opts...)
	for _, a := range addrs {
		cc, err := grpc.NewClient("passthrough:///"+a, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("api: coordinator %s: %w", a, err)
		}
		c.conns = append(c.conns, cc)
		c.clients = append(c.clients, NewControlClient(cc))
	}
	return c, nil
}

// Close closes the connections to every coordinator.
func (c *LeaderClient) Close() error {
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// Call runs fn against the leader: it starts with the coordinator that
// answered last and moves on while they answer Unavailable (a standby, or
// down) or DeadlineExceeded. Each try gets a context bounded by the
// client's timeout. The error is the last coordinator's; once ctx ends no
// further coordinator is tried.
func (c *LeaderClient) Call(ctx context.Context, fn func(context.Context, *ControlClient) error) error {
	c.mu.Lock()
	start := c.cur
	c.mu.Unlock()
	var err error
	for i := range c.clients {
		k := (start + i) % len(c.clients)
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		err = fn(cctx, c.clients[k])
		cancel()
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			c.mu.Lock()
			c.cur = k
			c.mu.Unlock()
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return err
}

// CheckAddress checks that addr is HOST:PORT, with a host and a port
// number from 1 to 65535, as every address of a control or data link must
// be.
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return fmt.Errorf("%q is not HOST:PORT (%s)", addr, ae.Err)
		}
		return fmt.Errorf("%q is not HOST:PORT", addr)
	}
	switch n, err := strconv.Atoi(port); {
	case port == "":
		return fmt.Errorf("%q has no port (want HOST:PORT, e.g. coordinator:7070)", addr)
	case host == "":
		return fmt.Errorf("%q has no host (want HOST:PORT, e.g. coordinator:7070)", addr)
	case err != nil || n < 1 || n > 65535:
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// probeTimeout bounds each step of Diagnose's look at one address.
const probeTimeout = time.Second

// Diagnose tells an error of Call that retrying cannot cure from one that
// it may: it returns an error naming the address and what it is when a
// coordinator address can never work, and nil otherwise. Such an address
// is one whose server answers gRPC without the control service (etcd's
// client port answers so), one where an HTTP/1 server answers (a
// coordinator's --http port, say), or one whose host DNS says does not
// exist. A refused connection, a timeout, a standby or a full job are
// transient: nil.
func (c *LeaderClient) Diagnose(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.Unimplemented {
		c.mu.Lock()
		addr := c.addrs[c.cur] // Call ends at the coordinator that answered
		c.mu.Unlock()
		return fmt.Errorf("the server at %s is not a ringtrain coordinator: it answers gRPC but not ringtrain's control service (%q); "+
			"an etcd client port answers like this", addr, status.Convert(err).Message())
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
	default:
		return nil
	}
	for _, a := range c.addrs {
		if perr := probe(ctx, a); perr != nil {
			return perr
		}
	}
	return nil
}

// http2Preface is what a gRPC client sends first on a connection.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// probe looks at one coordinator address the way Diagnose says: an error
// when it can never work, nil when it may.
func probe(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // NewLeaderClient checked it
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if net.ParseIP(host) == nil {
		_, err := net.DefaultResolver.LookupHost(ctx, host)
		if dns := (*net.DNSError)(nil); errors.As(err, &dns) && dns.IsNotFound {
			return fmt.Errorf("coordinator address %s: host %q does not exist (DNS: %v)", addr, host, dns.Err)
		}
		if err != nil {
			return nil // DNS may answer later
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil // refused or unreachable: it may start
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, http2Preface); err != nil {
		return nil
	}
	head := make([]byte, len("HTTP/1."))
	if _, err := io.ReadFull(conn, head); err != nil {
		return nil
	}
	if bytes.Equal(head, []byte("HTTP/1.")) {
		return fmt.Errorf("the server at %s is not a ringtrain coordinator: it is an HTTP/1 server (a coordinator's --http address?), "+
			"not the coordinator's gRPC control address (--listen, :7070 by default)", addr)
	}
	return nil
}
