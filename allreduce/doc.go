// Package allreduce sums []float32 buffers across the ranks of a ring.
//
// The package is layered so that each layer can be tested on its own:
//
//   - Schedules (RingSchedule, NaiveSchedule, BroadcastSchedule) are pure
//     functions of (ranks, rank, length, chunk) that say which spans of the
//     buffer are sent to the right neighbour and received from the left one,
//     and which receive each send waits for. Tests execute them without a
//     network.
//   - A Transport moves framed byte payloads to the right neighbour and from
//     the left one. MemNetwork is the in-memory twin used by tests (a
//     16-rank ring runs inside one test); GRPCTransport runs each link as a
//     bidirectional gRPC stream with a raw-bytes codec, so tensor payloads
//     are never copied into protobuf messages. Neighbours on one host move
//     their frames through a shared-memory ring set up over that stream
//     (shm.go) and keep the stream for pings, aborts and the end of the
//     link. Shaped wraps any transport in links of a fixed bandwidth and
//     latency (a queue that serialises frames), for experiments on
//     overlap and for simulated clusters. A RingListener (ListenRing) keeps
//     a rank's port bound for the life of its process and gives each
//     generation's GRPCTransport a view of it that the transport may close.
//   - A Codec turns float32 spans into wire bytes (FP32, BF16, FP16, and a
//     lossless zstd/s2 wrapper around any of them). The ring never inspects
//     the bytes. PowerSGD, which is not element-wise, is a reducer over a
//     model's parameters (PowerSGDReducer) built on Comm's exact
//     all-reduce; CheckGradientCodec names every codec a job may choose.
//   - Comm drives schedules over a Transport: one owned goroutine (Run)
//     executes queued operations in order, so a bucket can be reduced while
//     the caller computes the next one (Start / Handle.Wait).
//
// Every frame carries the job, the generation and a per-link sequence
// number; stale, foreign, truncated or oversized frames are errors. A dead
// or stalled neighbour is reported as a *PeerError within the configured
// timeout, and the failing rank sends both neighbours an abort notice naming
// the failed rank before closing its links, so that the error spreads around
// the ring instead of leaving survivors waiting. A rank waiting for a frame
// pings its right neighbour, which then waits up to one more timeout for the
// notice rather than blaming it.
//
// Reductions happen in a fixed order (each segment is summed rank after rank
// along the ring, and the owner's result is then copied around), so every
// rank ends with bit-identical sums, for lossy codecs too: the owner rounds
// its own segment through the codec before sending it.
package allreduce
