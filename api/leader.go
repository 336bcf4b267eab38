package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// LeaderClient calls a job's coordinators, following the leader: only
// the leader serves the control plane, and a standby answers Unavailable.
type LeaderClient struct {
	conns   []*grpc.ClientConn
	clients []*ControlClient
	timeout time.Duration

	mu  sync.Mutex
	cur int // the coordinator that answered last
}

// NewLeaderClient returns a client of the coordinators at addrs
// (host:port). Each call to one coordinator is bounded by timeout. opts
// are the dial options (default: plaintext). Connections are made lazily:
// nothing is dialled until the first Call.
func NewLeaderClient(addrs []string, timeout time.Duration, opts ...grpc.DialOption) (*LeaderClient, error) {
	if len(addrs) == 0 {
		return nil, errors.New("api: no coordinator address")
	}
	c := &LeaderClient{timeout: timeout}
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
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
