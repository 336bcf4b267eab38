// Package api is ringtrain's control-plane wire API: the messages workers,
// coordinators and `ringtrain status` exchange, the gRPC service that
// carries them, and LeaderClient, which calls whichever of a job's
// coordinators is the leader.
//
// The service is plain gRPC with a JSON codec instead of protobuf: the
// messages are small and rare (a heartbeat a few times a second per
// worker), JSON keeps them readable in logs and needs no generated code, and
// gRPC still gives deadlines, status codes, TLS and connection management.
// Tensor traffic never passes here; it goes over the all-reduce links.
//
// Errors use gRPC status codes that callers test with status.Code:
//
//	PermissionDenied    wrong join token
//	FailedPrecondition  the worker was built for another job (job hash)
//	ResourceExhausted   the job has max_workers members; retry later
//	Unavailable         this coordinator is a standby, or shutting down
//	NotFound            the worker is not a member (declared dead): join again
//	InvalidArgument     a malformed request
//	Unauthenticated     Status without a valid token (see WithToken)
package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
)

// CodecName is the gRPC content subtype of the control plane's messages.
const CodecName = "json"

// MaxMessage bounds a control message (encoded); anything larger is
// hostile. Servers and clients of the control plane also give it to gRPC
// as the largest message they receive.
const MaxMessage = 4 << 20

// authMetadata is the gRPC metadata key of a call's bearer token.
const authMetadata = "authorization"

// WithToken returns ctx with token as the bearer token of the calls made
// with it ("authorization: Bearer TOKEN" in the call's metadata): Status
// needs the join token or the job's status token. An empty token leaves
// ctx as it is.
func WithToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, authMetadata, "Bearer "+token)
}

// BearerToken returns the bearer token of an incoming call, or "".
func BearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(authMetadata) {
		if len(v) > 7 && strings.EqualFold(v[:7], "Bearer ") {
			return v[7:]
		}
	}
	return ""
}

func init() { encoding.RegisterCodec(jsonCodec{}) }

// jsonCodec encodes control messages as JSON.
type jsonCodec struct{}

func (jsonCodec) Name() string { return CodecName }

func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec) Unmarshal(data []byte, v any) error {
	if len(data) > MaxMessage {
		return fmt.Errorf("api: message of %d bytes exceeds %d", len(data), MaxMessage)
	}
	return json.Unmarshal(data, v)
}

// JoinRequest asks the coordinator to admit a worker.
type JoinRequest struct {
	Name  string `json:"name"`  // unique worker name, e.g. the pod name
	Token string `json:"token"` // the job's join token
	// JobHash is the hash of the job file the worker was started with;
	// empty means the worker accepts the coordinator's job.
	JobHash    string `json:"job_hash,omitempty"`
	DataAddr   string `json:"data_addr"`   // host:port of its all-reduce listener
	GossipAddr string `json:"gossip_addr"` // host:port of its memberlist member
	HTTPAddr   string `json:"http_addr,omitempty"`
	// Generation, Step, Epoch and Consumed describe the model state the
	// worker holds (all zero for a new process): a worker that trained on
	// while the coordinators changed offers its state to the next ring.
	Generation uint64 `json:"generation,omitempty"`
	Step       int64  `json:"step,omitempty"`
	Epoch      int    `json:"epoch,omitempty"`
	Consumed   int    `json:"consumed,omitempty"`
}

// JoinReply admits a worker and tells it the job.
type JoinReply struct {
	Job     string `json:"job"` // the job file, YAML
	JobHash string `json:"job_hash"`
	// JobID is stamped on every all-reduce frame so frames of another job
	// are rejected.
	JobID uint64 `json:"job_id"`
	// Gossip lists memberlist addresses to join (the coordinators').
	Gossip []string `json:"gossip"`
	// HeartbeatMillis is how often the worker must heartbeat.
	HeartbeatMillis int `json:"heartbeat_millis"`
	// StoreDir is the checkpoint store every worker writes its shards to
	// (a shared volume on a cluster).
	StoreDir string `json:"store_dir"`
}

// HeartbeatRequest tells the coordinator a worker is alive and how far it is.
type HeartbeatRequest struct {
	Name  string `json:"name"`
	Token string `json:"token"`
	// Generation is the generation the worker runs (or last ran); Step the
	// optimizer steps it has finished in it.
	Generation uint64 `json:"generation"`
	Step       int64  `json:"step"`
	// Broken reports that the ring of Generation failed on this worker (a
	// peer died or stalled); the coordinator then forms a new generation.
	Broken bool `json:"broken,omitempty"`
	// InRing reports that the worker has reached the ring of Generation:
	// formed it and synced its state. A member that does not within the
	// coordinator's stuck deadline is evicted (see the README).
	InRing bool `json:"in_ring,omitempty"`
	// Done reports that the worker finished the job's last step.
	Done  bool         `json:"done,omitempty"`
	Stats *WorkerStats `json:"stats,omitempty"`
}

// WorkerStats are a worker's running figures.
type WorkerStats struct {
	Epoch           int     `json:"epoch"`
	Loss            float64 `json:"loss"`     // mean training loss over the last window
	Accuracy        float64 `json:"accuracy"` // training accuracy over the last window
	ImagesPerSecond float64 `json:"images_per_second"`
	LR              float64 `json:"lr"`
	// Checksum is the parameters' checksum at ChecksumStep (hex).
	Checksum     string `json:"checksum,omitempty"`
	ChecksumStep int64  `json:"checksum_step,omitempty"`
	// PhaseSteps is the number of steps the worker finished since its
	// previous heartbeat, and StepSeconds, DataWaitSeconds, ComputeSeconds
	// and ReduceSeconds are their means per step: the whole step, the
	// wait for its batch, forward and backward, and the wait for the
	// all-reduce after them. Every step is in exactly one heartbeat
	// (PhaseSteps 0: none since the previous one, and the means are 0).
	PhaseSteps      int     `json:"phase_steps,omitempty"`
	StepSeconds     float64 `json:"step_seconds,omitempty"`
	DataWaitSeconds float64 `json:"data_wait_seconds,omitempty"`
	ComputeSeconds  float64 `json:"compute_seconds,omitempty"`
	ReduceSeconds   float64 `json:"reduce_seconds,omitempty"`
	// CheckpointFailures counts the checkpoints whose shard this worker
	// failed to write (a full disk, say) since it started: each was
	// skipped, and training went on. LastCheckpointError is the last
	// failure's error.
	CheckpointFailures  int    `json:"checkpoint_failures,omitempty"`
	LastCheckpointError string `json:"last_checkpoint_error,omitempty"`
}

// HeartbeatReply tells a worker what to do.
type HeartbeatReply struct {
	// Generation is the current generation; nil before the first.
	Generation *Generation `json:"generation,omitempty"`
	// Paused: the ring is stopped (below min_workers); wait.
	Paused bool   `json:"paused,omitempty"`
	Status string `json:"status"`
	// Stop: the job is complete or cancelled; the worker should exit.
	Stop bool `json:"stop,omitempty"`
	// CheckpointAt, when set, asks every rank of Generation to write a
	// checkpoint when its step count reaches this step (on an interrupt,
	// say, so training can resume from where it stood).
	CheckpointAt int64 `json:"checkpoint_at,omitempty"`
}

// Peer is one rank of a ring.
type Peer struct {
	Name     string `json:"name"`
	DataAddr string `json:"data_addr"`
}

// Generation is one configuration of the ring, as workers receive it.
type Generation struct {
	Number uint64 `json:"number"`
	Ring   []Peer `json:"ring"` // a worker's rank is its index
	// ResumeStep, Epoch and Consumed are where the ring continues: the
	// optimizer step and the data position (epoch, samples of its order
	// consumed) at that step.
	ResumeStep int64 `json:"resume_step"`
	Epoch      int   `json:"epoch"`
	Consumed   int   `json:"consumed"`
	// Source is the member whose state the ring starts from (broadcast
	// from its rank). When empty, every rank starts from Restore (a
	// committed checkpoint's name) or, when that is empty too, from the
	// job's initial parameters.
	Source  string `json:"source,omitempty"`
	Restore string `json:"restore,omitempty"`
}

// Rank returns name's rank in g, or -1.
func (g *Generation) Rank(name string) int {
	for i, p := range g.Ring {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// FileInfo names one checkpoint file a worker wrote, with its size and
// SHA-256 (hex).
type FileInfo struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// CheckpointReport tells the coordinator that a worker wrote its shard of
// the checkpoint at Step.
type CheckpointReport struct {
	Name       string `json:"name"`
	Token      string `json:"token"`
	Generation uint64 `json:"generation"`
	Rank       int    `json:"rank"`
	World      int    `json:"world"`
	// Checkpoint is the checkpoint's name (its directory in the store).
	Checkpoint string     `json:"checkpoint"`
	Step       int64      `json:"step"`
	Epoch      int        `json:"epoch"`
	Consumed   int        `json:"consumed"`
	Files      []FileInfo `json:"files"`
	TrainLoss  float64    `json:"train_loss,omitempty"`
	// Eval is the test-set evaluation when the checkpoint ends an epoch.
	Eval *Eval `json:"eval,omitempty"`
}

// Eval is one evaluation on the test set.
type Eval struct {
	Epoch    int     `json:"epoch"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
}

// CheckpointAck acknowledges a report.
type CheckpointAck struct{}

// LeaveRequest tells the coordinator a worker leaves on purpose.
type LeaveRequest struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

// LeaveReply acknowledges a leave.
type LeaveReply struct{}

// StatusRequest asks for the job's status.
type StatusRequest struct{}

// StatusReply is what `ringtrain status` shows.
type StatusReply struct {
	Job         string `json:"job"`
	JobHash     string `json:"job_hash"`
	Model       string `json:"model"`
	Dataset     string `json:"dataset"`
	Codec       string `json:"codec,omitempty"` // the gradients' codec; empty: fp32
	Coordinator string `json:"coordinator"`     // the leader's name
	// LeaderAddr is the leader's control address, as a standby answering
	// knows it from etcd ("" when it does not).
	LeaderAddr string `json:"leader_addr,omitempty"`
	// State is waiting, running, paused or done; Reason says why in words.
	State      string         `json:"state"`
	Reason     string         `json:"reason"`
	Generation uint64         `json:"generation"`
	Ring       []string       `json:"ring"` // the current generation's workers in rank order
	MinWorkers int            `json:"min_workers"`
	MaxWorkers int            `json:"max_workers"`
	Epochs     int            `json:"epochs"`
	Step       int64          `json:"step"`
	Epoch      int            `json:"epoch"`
	Workers    []WorkerStatus `json:"workers"`
	// LastCheckpoint is the newest checkpoint committed in etcd.
	LastCheckpoint  string  `json:"last_checkpoint,omitempty"`
	LastEval        *Eval   `json:"last_eval,omitempty"`
	ImagesPerSecond float64 `json:"images_per_second"`
}

// WorkerStatus is one member as the coordinator sees it.
type WorkerStatus struct {
	Name string `json:"name"`
	Rank int    `json:"rank"` // -1 when not in the ring
	// Generation is the generation the worker last reported running; Step
	// the steps it has finished in it.
	Generation uint64       `json:"generation,omitempty"`
	Step       int64        `json:"step"`
	LastSeen   time.Time    `json:"last_seen"`
	Stats      *WorkerStats `json:"stats,omitempty"`
	// Straggler is set while the coordinator flags the worker as slower
	// than the rest of its ring.
	Straggler *Straggler `json:"straggler,omitempty"`
}

// Straggler says how a worker lags behind its ring.
type Straggler struct {
	// Phase is what is slow: "compute" (forward and backward), "data"
	// (waiting for batches) or "network" (the all-reduce, when neither of
	// its own phases explains it).
	Phase string `json:"phase"`
	// Factor is the worker's mean seconds per step in Phase over the
	// ring's median of the same phase (the worker itself left out).
	Factor float64 `json:"factor"`
	// Since is when the coordinator flagged it.
	Since time.Time `json:"since"`
}

// GenerationEvent is one entry of a job's generation history: a new
// generation of the ring, or the ring stopped (Paused) because too few
// workers remain.
type GenerationEvent struct {
	Number uint64    `json:"number"` // the new generation; for a pause, the one stopped
	Time   time.Time `json:"time"`
	Paused bool      `json:"paused,omitempty"`
	// Ring is the new ring in rank order; for a pause, the members of the
	// stopped ring that wait.
	Ring []string `json:"ring"`
	// ResumeStep, Epoch, Consumed, Source and Restore are where the new
	// ring continues from, as in Generation.
	ResumeStep int64  `json:"resume_step"`
	Epoch      int    `json:"epoch"`
	Consumed   int    `json:"consumed"`
	Source     string `json:"source,omitempty"`
	Restore    string `json:"restore,omitempty"`
	// Causes are why: the membership changes since the previous
	// generation.
	Causes []GenerationCause `json:"causes"`
	// Reason is the job's status line after the event, e.g. "waiting: 2
	// of min 3 workers".
	Reason string `json:"reason,omitempty"`
}

// GenerationCause is one reason for a generation or a pause. Kind is
// start (the job's first generation), resume (the first generation of a
// coordinator that took over the job), join, rejoin (a member's process
// restarted), left, dead (memberlist declared it gone), silent (no
// heartbeat) or broken (the member found the ring's all-reduce broken).
type GenerationCause struct {
	Kind   string `json:"kind"`
	Worker string `json:"worker,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// ControlServer is the coordinator's side of the control plane.
type ControlServer interface {
	Join(context.Context, *JoinRequest) (*JoinReply, error)
	Heartbeat(context.Context, *HeartbeatRequest) (*HeartbeatReply, error)
	ReportCheckpoint(context.Context, *CheckpointReport) (*CheckpointAck, error)
	Leave(context.Context, *LeaveRequest) (*LeaveReply, error)
	Status(context.Context, *StatusRequest) (*StatusReply, error)
}

const serviceName = "ringtrain.v1.Control"

// RegisterControlServer registers srv on s.
func RegisterControlServer(s grpc.ServiceRegistrar, srv ControlServer) {
	s.RegisterService(&controlDesc, srv)
}

func unary[Req, Rep any](call func(ControlServer, context.Context, *Req) (*Rep, error), method string) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(Req)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return call(srv.(ControlServer), ctx, req.(*Req))
			}
			if ic == nil {
				return h(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + serviceName + "/" + method}, h)
		},
	}
}

var controlDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*ControlServer)(nil),
	Methods: []grpc.MethodDesc{
		unary(ControlServer.Join, "Join"),
		unary(ControlServer.Heartbeat, "Heartbeat"),
		unary(ControlServer.ReportCheckpoint, "ReportCheckpoint"),
		unary(ControlServer.Leave, "Leave"),
		unary(ControlServer.Status, "Status"),
	},
	Metadata: "ringtrain/api",
}

// ControlClient calls a coordinator's control service.
type ControlClient struct {
	cc grpc.ClientConnInterface
}

// NewControlClient returns a client over cc.
func NewControlClient(cc grpc.ClientConnInterface) *ControlClient { return &ControlClient{cc: cc} }

func invoke[Rep any](ctx context.Context, c *ControlClient, method string, req any) (*Rep, error) {
	out := new(Rep)
	if err := c.cc.Invoke(ctx, "/"+serviceName+"/"+method, req, out, grpc.CallContentSubtype(CodecName)); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *ControlClient) Join(ctx context.Context, in *JoinRequest) (*JoinReply, error) {
	return invoke[JoinReply](ctx, c, "Join", in)
}

func (c *ControlClient) Heartbeat(ctx context.Context, in *HeartbeatRequest) (*HeartbeatReply, error) {
	return invoke[HeartbeatReply](ctx, c, "Heartbeat", in)
}

func (c *ControlClient) ReportCheckpoint(ctx context.Context, in *CheckpointReport) (*CheckpointAck, error) {
	return invoke[CheckpointAck](ctx, c, "ReportCheckpoint", in)
}

func (c *ControlClient) Leave(ctx context.Context, in *LeaveRequest) (*LeaveReply, error) {
	return invoke[LeaveReply](ctx, c, "Leave", in)
}

func (c *ControlClient) Status(ctx context.Context, in *StatusRequest) (*StatusReply, error) {
	return invoke[StatusReply](ctx, c, "Status", in)
}
