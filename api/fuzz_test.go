package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzCodecRoundTrip gives the control-plane codec arbitrary frames, as a
// coordinator or worker receives them, for each message type: it never
// panics, a frame over MaxMessage is refused without being parsed, and
// what it accepts encodes and decodes again to the same value.
func FuzzCodecRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"name":"w1","token":"t","job_hash":"h","data_addr":"127.0.0.1:1","generation":3,"step":10}`,
		`{"name":"w1","token":"t","generation":3,"step":10,"broken":true,"in_ring":true,"stats":{"epoch":1,"loss":0.5}}`,
		`{"name":"w1","generation":2,"rank":1,"world":2,"checkpoint":"ckpt-000000000010","step":10,"files":[{"name":"model.safetensors","size":12,"sha256":"ab"}],"eval":{"epoch":1}}`,
		`{"generation":{"number":4,"ring":[{"name":"w1","data_addr":"a"}]},"paused":true,"status":"x","checkpoint_at":9}`,
		`{}`, `null`, `[]`, `{"step":-1}`, `{"generation":-1}`, `{"step":1e400}`, `{"name":"\ud800"}`,
		`{"stats":{"loss":NaN}}`, `{"files":[null,{}]}`, `{"ring":[` + strings.Repeat(`{},`, 50) + `{}]}`,
	} {
		f.Add(uint8(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		types := []func() any{
			func() any { return new(JoinRequest) }, func() any { return new(JoinReply) },
			func() any { return new(HeartbeatRequest) }, func() any { return new(HeartbeatReply) },
			func() any { return new(CheckpointReport) }, func() any { return new(CheckpointAck) },
			func() any { return new(LeaveRequest) }, func() any { return new(LeaveReply) },
			func() any { return new(StatusRequest) }, func() any { return new(StatusReply) },
		}
		newV := types[int(kind)%len(types)]
		c := jsonCodec{}
		v := newV()
		if err := c.Unmarshal(data, v); err != nil {
			return
		}
		if len(data) > MaxMessage {
			t.Fatalf("a message of %d bytes was accepted", len(data))
		}
		b, err := c.Marshal(v)
		if err != nil {
			t.Fatalf("%T decoded from %q does not encode: %v", v, data, err)
		}
		w := newV()
		if err := json.Unmarshal(b, w); err != nil {
			t.Fatalf("%T: its encoding %q does not decode: %v", v, b, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("%T: %+v encodes to %q, which decodes to %+v", v, v, b, w)
		}
	})
}
