package api

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// stubServer answers every call; Join refuses a wrong token. Status
// records the caller's bearer token.
type stubServer struct {
	last   *HeartbeatRequest
	bearer string
}

func (s *stubServer) Join(_ context.Context, r *JoinRequest) (*JoinReply, error) {
	if r.Token != "t" {
		return nil, status.Error(codes.PermissionDenied, "wrong join token")
	}
	return &JoinReply{Job: "model: lenet5\n", JobHash: "h", JobID: 7, Gossip: []string{"g:1"}, HeartbeatMillis: 200}, nil
}

func (s *stubServer) Heartbeat(_ context.Context, r *HeartbeatRequest) (*HeartbeatReply, error) {
	s.last = r
	return &HeartbeatReply{Generation: &Generation{Number: 3, Ring: []Peer{{"a", "x:1"}, {"b", "y:2"}}, ResumeStep: 9}, Status: "running"}, nil
}

func (s *stubServer) ReportCheckpoint(context.Context, *CheckpointReport) (*CheckpointAck, error) {
	return &CheckpointAck{}, nil
}
func (s *stubServer) Leave(context.Context, *LeaveRequest) (*LeaveReply, error) {
	return &LeaveReply{}, nil
}
func (s *stubServer) Status(ctx context.Context, _ *StatusRequest) (*StatusReply, error) {
	s.bearer = BearerToken(ctx)
	return &StatusReply{Job: "j", State: "running"}, nil
}

func TestServiceRoundTrip(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	stub := &stubServer{}
	RegisterControlServer(srv, stub)
	go srv.Serve(ln)
	defer srv.Stop()
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := NewControlClient(cc)
	ctx := context.Background()
	rep, err := c.Join(ctx, &JoinRequest{Name: "w", Token: "t"})
	if err != nil || rep.JobID != 7 || rep.Gossip[0] != "g:1" {
		t.Fatalf("Join = %+v, %v", rep, err)
	}
	if _, err := c.Join(ctx, &JoinRequest{Name: "w", Token: "x"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Join with a wrong token: %v", err)
	}
	hb, err := c.Heartbeat(ctx, &HeartbeatRequest{Name: "b", Generation: 3, Step: 10, Stats: &WorkerStats{Loss: 0.5}})
	if err != nil || hb.Generation.Rank("b") != 1 || hb.Generation.Rank("z") != -1 {
		t.Fatalf("Heartbeat = %+v, %v", hb, err)
	}
	if stub.last.Step != 10 || stub.last.Stats.Loss != 0.5 {
		t.Fatalf("server got %+v", stub.last)
	}
	if _, err := c.ReportCheckpoint(ctx, &CheckpointReport{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leave(ctx, &LeaveRequest{}); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx, &StatusRequest{}); err != nil || st.State != "running" || stub.bearer != "" {
		t.Fatalf("Status = %+v, %v; bearer token %q", st, err, stub.bearer)
	}
	if _, err := c.Status(WithToken(ctx, "read-only"), &StatusRequest{}); err != nil || stub.bearer != "read-only" {
		t.Fatalf("Status with a token: %v; the server saw %q", err, stub.bearer)
	}
}

func TestCodecRefusesOversizedMessages(t *testing.T) {
	big := []byte(`{"name":"` + strings.Repeat("x", MaxMessage) + `"}`)
	var r JoinRequest
	if err := (jsonCodec{}).Unmarshal(big, &r); err == nil {
		t.Fatal("an oversized message decoded")
	}
}

// FuzzUnmarshal: any bytes decode into every message or fail, never panic.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"name":"w","token":"t","data_addr":"h:1"}`,
		`{"generation":{"number":3,"ring":[{"name":"a","data_addr":"x:1"}]}}`,
		`{"files":[{"name":"m","size":-1,"sha256":"zz"}],"eval":{"accuracy":1e999}}`,
		`[`, `null`, `{"step":"NaN"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := jsonCodec{}
		for _, v := range []any{&JoinRequest{}, &JoinReply{}, &HeartbeatRequest{}, &HeartbeatReply{}, &CheckpointReport{}, &StatusReply{}} {
			_ = c.Unmarshal(b, v)
		}
		var r HeartbeatReply
		if c.Unmarshal(b, &r) == nil && r.Generation != nil {
			r.Generation.Rank("w")
		}
	})
}
