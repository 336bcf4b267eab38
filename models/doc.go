// Package models holds ringtrain's networks and what trains them: layers
// (Modules that record tensorcore ops on a tape), weight initializers,
// losses, optimizers, learning-rate schedules, the flat parameter arena and
// the model zoo (name → constructor). It also builds the optimizer and the
// schedule a job file names (NewOptimizer, NewSchedule, CheckOptimizer).
//
// Memory layout. Every parameter of a model lives in one []float32
// (Arena.Data) and every gradient in one parallel []float32 (Arena.Grad);
// layers hold tensor views into them. Parameters are laid out in
// construction order, contiguously and without padding, so a gradient bucket
// for all-reduce is a sub-slice of Arena.Grad and a checkpoint is one write of
// Arena.Data, Arena.Buffers (non-trained state such as BatchNorm running
// statistics) and the optimizer's flat state.
//
// Building allocates; a training step does not: a layer's Forward only
// records ops on the tape, and optimizers update the flat slices in place.
//
// models imports only tensorcore, job (for the job file's optimizer and
// schedule) and the standard library.
package models
