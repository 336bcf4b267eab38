package coordinator

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/api"
)

// FuzzServerRequests decodes arbitrary frames with the control plane's
// codec into the requests a coordinator serves (Join, Heartbeat,
// ReportCheckpoint, Leave) and hands them to a leading Server on embedded
// etcd whose ring is running: it never panics, answers every request in
// time, and refuses what it refuses with a gRPC status that says why (a
// code other than Unknown, and a message).
func FuzzServerRequests(f *testing.F) {
	c := newCluster(f)
	cd := c.start("coord-a", func(cfg *ServerConfig) { cfg.StuckAfter = 500 * time.Millisecond })
	for deadline := time.Now().Add(hang); !cd.srv.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			f.Fatal("coord-a does not lead")
		}
	}
	ctx := context.Background()
	for _, name := range []string{"w1", "w2"} {
		if _, err := cd.srv.Join(ctx, &api.JoinRequest{Name: name, Token: testToken, DataAddr: "127.0.0.1:7100"}); err != nil {
			f.Fatal(err)
		}
	}
	codec := encoding.GetCodec(api.CodecName)
	for kind, s := range []string{
		`{"name":"w3","token":"t","job_hash":"","data_addr":"127.0.0.1:1","generation":1,"step":4,"epoch":0,"consumed":32}`,
		`{"name":"w1","token":"t","generation":1,"step":3,"broken":true,"in_ring":true,"stats":{"epoch":1,"loss":0.5,"checkpoint_failures":2}}`,
		`{"name":"w1","token":"t","generation":1,"rank":0,"world":2,"checkpoint":"ckpt-000000000010","step":10,"epoch":1,"consumed":0,"files":[{"name":"model-00000-of-00002.safetensors","size":12,"sha256":"ab"}],"eval":{"epoch":1,"accuracy":2}}`,
		`{"name":"w2","token":"t"}`,
	} {
		f.Add(uint8(kind), true, []byte(s))
		f.Add(uint8(kind), false, []byte(s))
	}
	f.Add(uint8(1), true, []byte(`{"name":"w2","generation":18446744073709551615,"step":9223372036854775807,"in_ring":true}`))
	f.Add(uint8(2), true, []byte(`{"name":"w2","generation":1,"rank":-1,"world":-5,"checkpoint":"../../etc","step":-3,"files":[{"name":"/x","size":-1}]}`))
	f.Add(uint8(0), true, []byte(`{"name":"w 1","job_hash":"other"}`))
	// The server logs from its own goroutines: not to f once fuzzing.
	c.log.mu.Lock()
	c.log.done = true
	c.log.mu.Unlock()
	f.Fuzz(func(t *testing.T, kind uint8, token bool, data []byte) {
		var req any
		switch kind % 4 {
		case 0:
			req = new(api.JoinRequest)
		case 1:
			req = new(api.HeartbeatRequest)
		case 2:
			req = new(api.CheckpointReport)
		default:
			req = new(api.LeaveRequest)
		}
		if codec.Unmarshal(data, req) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		var reply any
		var err error
		start := time.Now()
		switch r := req.(type) {
		case *api.JoinRequest:
			if token {
				r.Token = testToken
			}
			reply, err = cd.srv.Join(ctx, r)
		case *api.HeartbeatRequest:
			if token {
				r.Token = testToken
			}
			reply, err = cd.srv.Heartbeat(ctx, r)
		case *api.CheckpointReport:
			if token {
				r.Token = testToken
			}
			reply, err = cd.srv.ReportCheckpoint(ctx, r)
		case *api.LeaveRequest:
			if token {
				r.Token = testToken
			}
			reply, err = cd.srv.Leave(ctx, r)
		}
		if d := time.Since(start); d > hang/2 {
			t.Fatalf("%T answered after %v", req, d)
		}
		if err != nil {
			st, ok := status.FromError(err)
			if !ok || st.Code() == codes.Unknown || st.Code() == codes.OK || st.Message() == "" {
				t.Fatalf("%T %q: error %v is not a gRPC status that says why", req, data, err)
			}
			return
		}
		if reply == nil {
			t.Fatalf("%T %q: no reply and no error", req, data)
		}
	})
}
