package worker

import (
	"context"
	"fmt"
	"sync"

	"github.com/ringtrain/ringtrain/dataset"
)

// pipeline prepares the batches of an epoch's remaining steps ahead of the
// training step, on goroutines of its own.
//
// Which samples step k of the pipeline sees is fixed when it starts: this
// rank's AppendStepShare of the step that begins consumed+k·batch samples
// into the epoch's order. Producer i prepares the steps k ≡ i (mod
// threads), each into one of its two buffers, so at most 2·threads batches
// are ready or in preparation at once (a bounded queue), and next hands
// them out in step order. Prefetching therefore never changes what a step
// sees, and a resumed run sees what an uninterrupted one did.
//
// next and release are called by one goroutine; stop ends the producers
// and waits for them.
type pipeline struct {
	outs    []chan *batch // per producer, in its step order
	free    []chan *batch // per producer, its spare buffers
	k       int           // the next step to hand out
	steps   int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

// batch is one step's share of samples for this rank, ready to train on.
type batch struct {
	k    int
	idx  []int
	x    []float32 // the step's inputs: views of xbuf and ybuf
	y    []int
	xbuf []float32
	ybuf []int
	err  error
}

// perProducer is how many batch buffers each producer owns.
const perProducer = 2

func startPipeline(set dataset.Set, order []int, consumed, batchSize, rank, world int, tf dataset.Transform, threads int) *pipeline {
	threads = max(threads, 1)
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{
		outs: make([]chan *batch, threads), free: make([]chan *batch, threads),
		steps: dataset.StepsPerEpoch(len(order)-consumed, batchSize), cancel: cancel,
	}
	most := (batchSize + world - 1) / world
	for i := range threads {
		p.outs[i] = make(chan *batch, perProducer)
		p.free[i] = make(chan *batch, perProducer)
		for range perProducer {
			p.free[i] <- &batch{idx: make([]int, 0, most), xbuf: make([]float32, most*tf.Out.Size()), ybuf: make([]int, most)}
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for k := i; k < p.steps; k += threads {
				var b *batch
				select {
				case b = <-p.free[i]:
				case <-ctx.Done():
					return
				}
				b.k = k
				b.idx = dataset.AppendStepShare(b.idx[:0], order, consumed+k*batchSize, batchSize, rank, world)
				n := len(b.idx)
				b.x, b.y = b.xbuf[:n*tf.Out.Size()], b.ybuf[:n]
				b.err = set.Fill(b.x, b.y, b.idx, tf)
				select {
				case p.outs[i] <- b:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return p
}

// next returns the next step's batch; its x and y hold exactly that step's
// samples. The batch belongs to the caller until release.
func (p *pipeline) next(ctx context.Context) (*batch, error) {
	if p.k >= p.steps {
		return nil, fmt.Errorf("worker: pipeline: no step %d in an epoch of %d left", p.k, p.steps)
	}
	i := p.k % len(p.outs)
	select {
	case b := <-p.outs[i]:
		if b.err != nil {
			return nil, fatal(fmt.Errorf("worker: preparing step %d's batch: %w", b.k, b.err))
		}
		p.k++
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release gives a batch's buffers back to its producer.
func (p *pipeline) release(b *batch) {
	p.free[b.k%len(p.free)] <- b
}

// stop ends the producers and waits for them.
func (p *pipeline) stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	p.cancel()
	p.wg.Wait()
}
