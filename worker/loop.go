package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// loop is the state of one training run in progress.
type loop struct {
	spec           job.Spec
	runDir         string
	model          *models.Model
	opt            models.Optimizer
	sched          models.Schedule
	store          *checkpoint.Store
	rlog           *runlog.Log
	train, test    *dataset.MNIST
	in             *input
	sampler        *dataset.Sampler
	compute        *compute
	evalTape       *tensorcore.Tape
	progress       Progress
	now            func() time.Time
	stepsPerEpoch  int
	step           int
	lastCheckpoint string
	lastEval       EvalStats
	trainLoss      float64
}

// epochTally accumulates the running figures of an epoch.
type epochTally struct {
	images, correct int
	lossSum         float64 // sum over images of the per-image loss
	seconds         float64 // time spent in training steps
	// the current metrics window
	wImages, wCorrect int
	wLoss, wSeconds   float64
}

func (l *loop) run(ctx context.Context, launch time.Time, sum *runlog.Summary) error {
	b := l.spec.BatchSize
	idx := make([]int, b)
	x := make([]float32, b*l.in.size())
	y := make([]int, b)
	for l.sampler.Epoch() < l.spec.Epochs {
		epoch := l.sampler.Epoch()
		done := (l.sampler.State().Position + b - 1) / b
		if l.progress != nil {
			l.progress.EpochStart(epoch, l.spec.Epochs, l.stepsPerEpoch, done)
		}
		var t epochTally
		for {
			if err := ctx.Err(); err != nil {
				return l.interrupt(err)
			}
			n := l.sampler.Next(idx)
			if n == 0 {
				break
			}
			start := l.now()
			l.in.batch(l.train, idx[:n], x, y)
			loss, correct, err := l.trainStep(x[:n*l.in.size()], y[:n])
			if err != nil {
				return err
			}
			secs := l.now().Sub(start).Seconds()
			t.add(n, correct, loss, secs)
			done++
			lr := float64(l.sched.LR(l.step - 1)) // the rate the step just taken used
			if t.wImages >= logWindow*b || done == l.stepsPerEpoch {
				l.rlog.Add(runlog.Record{
					Kind: "train", Time: l.now().UTC(), Step: l.step, Epoch: epoch,
					Progress: float64(epoch) + float64(done)/float64(l.stepsPerEpoch),
					LR:       lr,
					Loss:     t.wLoss / float64(t.wImages), Accuracy: float64(t.wCorrect) / float64(t.wImages),
					ImagesPerSecond: float64(t.wImages) / t.wSeconds,
				})
				t.wImages, t.wCorrect, t.wLoss, t.wSeconds = 0, 0, 0, 0
			}
			if l.progress != nil {
				l.progress.Step(StepStats{
					Epoch: epoch, Step: l.step, EpochStep: done, LR: lr,
					Loss: t.lossSum / float64(t.images), Accuracy: float64(t.correct) / float64(t.images),
					ImagesPerSecond: float64(t.images) / t.seconds,
				})
			}
			if e := l.spec.CheckpointEvery; e > 0 && l.step%e == 0 {
				if err := l.checkpoint(); err != nil {
					return err
				}
			}
		}
		l.sampler.NextEpoch()
		if t.images > 0 {
			l.trainLoss = t.lossSum / float64(t.images)
			sum.TrainLoss = l.trainLoss
			sum.ImagesPerSecond = float64(t.images) / t.seconds
		}
		ev := l.evaluate(epoch)
		l.lastEval = ev
		sum.TestAccuracy, sum.TestLoss = ev.Accuracy, ev.Loss
		if ev.Accuracy >= 0.99 && sum.SecondsTo99 == 0 {
			sum.SecondsTo99 = l.now().Sub(launch).Seconds()
		}
		l.rlog.Add(runlog.Record{
			Kind: "eval", Time: l.now().UTC(), Step: l.step, Epoch: epoch, Progress: float64(epoch + 1),
			Loss: ev.Loss, Accuracy: ev.Accuracy,
		})
		if l.progress != nil {
			l.progress.EpochEnd(ev)
		}
		if err := l.checkpoint(); err != nil {
			return err
		}
		if err := runlog.WritePlot(l.runDir, l.spec.Model, l.rlog.Records()); err != nil {
			return err
		}
	}
	return nil
}

func (t *epochTally) add(n, correct int, loss, secs float64) {
	t.images += n
	t.correct += correct
	t.lossSum += loss * float64(n)
	t.seconds += secs
	t.wImages += n
	t.wCorrect += correct
	t.wLoss += loss * float64(n)
	t.wSeconds += secs
}

// trainStep runs forward, backward and the optimizer step on one batch and
// returns the batch's mean loss and its number of correct predictions.
func (l *loop) trainStep(x []float32, y []int) (float64, int, error) {
	lv, correct := l.compute.step(l.step, x, y)
	if !isFinite(lv) {
		return 0, 0, fmt.Errorf("worker: training diverged at step %d: loss is %v; lower the learning rate", l.step+1, lv)
	}
	l.opt.Step(l.sched.LR(l.step))
	l.step++
	return lv, correct, nil
}

// evaluate measures loss and accuracy on the whole test set.
func (l *loop) evaluate(epoch int) EvalStats {
	start := l.now()
	lossSum, correct := evalRange(l.model, l.evalTape, l.in, l.test, 0, l.test.N)
	return EvalStats{
		Epoch: epoch, Loss: lossSum / float64(l.test.N), Accuracy: float64(correct) / float64(l.test.N),
		Seconds: l.now().Sub(start).Seconds(),
	}
}

// evalRange runs the model in inference mode on samples [lo, hi) of d and
// returns the summed loss and the number of correct predictions.
func evalRange(model *models.Model, tp *tensorcore.Tape, in *input, d *dataset.MNIST, lo, hi int) (lossSum float64, correct int) {
	const eb = 250 // small enough that evaluation buffers stay well under the training ones
	idx := make([]int, eb)
	x := make([]float32, eb*in.size())
	y := make([]int, eb)
	for ; lo < hi; lo += eb {
		n := min(eb, hi-lo)
		for i := 0; i < n; i++ {
			idx[i] = lo + i
		}
		in.batch(d, idx[:n], x, y)
		tp.Reset()
		xv := tp.Const(tensorcore.FromSlice(x[:n*in.size()], in.shape(n)...))
		logits := model.Forward(tp, xv, false)
		loss := tp.CrossEntropy(logits, y[:n])
		lossSum += float64(loss.Value.Data[0]) * float64(n)
		correct += models.CountCorrect(logits.Value, y[:n])
	}
	return lossSum, correct
}

// interrupt checkpoints the position reached so --resume continues from it.
func (l *loop) interrupt(cause error) error {
	if err := l.checkpoint(); err != nil {
		return fmt.Errorf("worker: %w (and the checkpoint at step %d failed: %v)", ErrInterrupted, l.step, err)
	}
	return fmt.Errorf("worker: %w at step %d (%v); checkpoint %s is committed", ErrInterrupted, l.step, cause, l.lastCheckpoint)
}
