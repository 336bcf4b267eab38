package repro

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
)

func init() {
	register(Experiment{
		Name:  "deep-convnets",
		Title: "deep 3×3 ConvNets: a VGG-style net on MNIST, and the degradation of deep plain nets that residual connections remove",
		Paper: "Simonyan, Zisserman 2015 (Very deep convolutional networks: stacks of 3×3 convolutions); He, Zhang, Ren, Sun 2016 (Deep residual learning, Figs. 1 and 6: plain vs residual nets of 20 and 56 layers)",
		Run:   runDeepConvnets,
	})
}

// degradationNet is one of the four nets of the degradation study.
type degradationNet struct {
	run      string // run directory name under runs/
	label    string // legend
	model    string // zoo name
	shortcut string // job shortcut: "" (residual) or "none" (plain)
}

var degradationNets = []degradationNet{
	{"plain-20", "plain-20", "resnet20", "none"},
	{"resnet-20", "ResNet-20", "resnet20", ""},
	{"plain-56", "plain-56", "resnet56", "none"},
	{"resnet-56", "ResNet-56", "resnet56", ""},
}

// degradationJob is the job of one net of the degradation study: the CIFAR
// nets of He et al. on Fashion-MNIST padded to 32×32, SGD with momentum
// 0.9 and weight decay 10⁻⁴ at a constant rate (the paper's first phase),
// every net for the same number of steps on the same subset of the
// training set.
func degradationJob(env *Env, n degradationNet) job.Spec {
	s := job.Default()
	s.Model, s.Shortcut, s.Dataset, s.ImageSize = n.model, n.shortcut, "fashion-mnist", 32
	s.BatchSize, s.Epochs, s.TrainLimit, s.TestLimit = 32, 3, 3200, 500
	s.Optimizer = job.Optimizer{Name: "sgd", LR: 0.05, Momentum: 0.9, WeightDecay: 1e-4}
	s.Schedule = job.Schedule{Name: "constant"}
	s.KeepCheckpoints = 1
	if env.Quick {
		s.BatchSize, s.Epochs, s.TrainLimit, s.TestLimit = 8, 1, 16, 16
	}
	return s
}

// trainCurve returns the "train" records of a run as steps and the value
// of field for each (a window's mean).
func trainCurve(recs []runlog.Record, field func(runlog.Record) float64) (steps, ys []float64) {
	for _, r := range recs {
		if r.Kind == "train" {
			steps, ys = append(steps, float64(r.Step)), append(ys, field(r))
		}
	}
	return steps, ys
}

// finalTrainLoss is the mean training loss of the last span steps of a
// run: the "train" records whose windows end in (last−span, last], each
// weighted by the steps its window covers (from the previous record's
// step, or 0). It fails when there are no training records.
func finalTrainLoss(recs []runlog.Record, span int) (float64, error) {
	var train []runlog.Record
	for _, r := range recs {
		if r.Kind == "train" {
			train = append(train, r)
		}
	}
	if len(train) == 0 {
		return 0, errors.New("no training records")
	}
	last := train[len(train)-1].Step
	var sum, steps float64
	prev := 0
	for _, r := range train {
		w := r.Step - prev
		prev = r.Step
		if r.Step <= last-span || w <= 0 {
			continue
		}
		sum += r.Loss * float64(w)
		steps += float64(w)
	}
	if steps == 0 {
		return train[len(train)-1].Loss, nil
	}
	return sum / steps, nil
}

// higherClaim holds that a's final training loss is above b's.
func higherClaim(what, paper string, a, b string, la, lb float64) Claim {
	return Claim{
		What: what, Paper: paper, Target: fmt.Sprintf("%s > %s", a, b),
		Ours: fmt.Sprintf("%.4f vs %.4f", la, lb), Pass: la > lb,
	}
}

func runDeepConvnets(ctx context.Context, env *Env) (*Result, error) {
	const vggShare = 0.45
	vggSpec := mnistJob(env, "vgg", 3, 0.05)
	if env.Quick {
		vggSpec.TrainLimit, vggSpec.TestLimit = 128, 64
	}
	vgg, err := TrainJob(ctx, env, "vgg", vggSpec, 0, vggShare)
	if err != nil {
		return nil, err
	}

	// The four nets, each for the same steps on the same subset.
	share := (1 - vggShare) / float64(len(degradationNets))
	loss := map[string]float64{}
	var lossCurves, errCurves []Series
	var accs []string
	var spec job.Spec
	for i, n := range degradationNets {
		spec = degradationJob(env, n)
		sum, err := TrainJob(ctx, env, n.run, spec, vggShare+float64(i)*share, share)
		if err != nil {
			return nil, err
		}
		recs, err := runlog.ReadRecords(filepath.Join(env.Dir, "runs", n.run))
		if err != nil {
			return nil, err
		}
		if loss[n.run], err = finalTrainLoss(recs, 100); err != nil {
			return nil, fmt.Errorf("%s: %w", n.run, err)
		}
		x, y := trainCurve(recs, func(r runlog.Record) float64 { return r.Loss })
		lossCurves = append(lossCurves, Series{Name: n.label, X: x, Y: y, Points: true})
		x, y = trainCurve(recs, func(r runlog.Record) float64 { return 100 * (1 - r.Accuracy) })
		errCurves = append(errCurves, Series{Name: n.label, X: x, Y: y, Points: true})
		accs = append(accs, fmt.Sprintf("%s %.4f (test accuracy %.1f%%, %.0f s)", n.label, loss[n.run], 100*sum.TestAccuracy, sum.WallSeconds))
	}

	fig1, err := LinePlot{
		Title: "Fashion-MNIST, equal steps: training loss of plain and residual nets", XLabel: "step", YLabel: "training loss (50-step window)",
		Series: lossCurves,
	}.Write(env, "degradation-loss.png", "training loss vs step of the plain and residual 20- and 56-layer nets (as He et al.'s Fig. 6, in loss)")
	if err != nil {
		return nil, err
	}
	fig2, err := LinePlot{
		Title: "Fashion-MNIST, equal steps: training error of plain and residual nets", XLabel: "step", YLabel: "training error % (50-step window)",
		Series: errCurves,
	}.Write(env, "degradation-error.png", "training error vs step of the same runs (the quantity of He et al.'s Figs. 1 and 6)")
	if err != nil {
		return nil, err
	}

	steps := spec.Epochs * ((spec.TrainLimit + spec.BatchSize - 1) / spec.BatchSize)
	fig6 := "Fig. 6 (CIFAR-10): "
	deeperRes := higherClaim("final training loss, ResNet-20 vs ResNet-56", fig6+"ResNet-56 trains to lower error than ResNet-20",
		"ResNet-20", "ResNet-56", loss["resnet-20"], loss["resnet-56"])
	deeperRes.Stretch = true
	res := &Result{
		Claims: []Claim{
			errorClaim("test error, VGG-style 3×3 net on MNIST, 3 epochs", "— (3×3 stacks are the paper's design; it reports ImageNet, not MNIST)", 0.80, vgg.TestAccuracy),
			higherClaim("final training loss, plain-20 vs ResNet-20", fig6+"plain nets train to higher error than residual nets of the same depth",
				"plain-20", "ResNet-20", loss["plain-20"], loss["resnet-20"]),
			higherClaim("final training loss, plain-56 vs ResNet-56", fig6+"plain nets train to higher error than residual nets of the same depth",
				"plain-56", "ResNet-56", loss["plain-56"], loss["resnet-56"]),
			higherClaim("final training loss, plain-56 vs plain-20", "Figs. 1 and 6: the 56-layer plain net has higher training error than the 20-layer one",
				"plain-56", "plain-20", loss["plain-56"], loss["plain-20"]),
			deeperRes,
		},
		Figures: []Figure{fig1, fig2, {File: "runs/vgg/curves.png", Caption: "vgg on MNIST: training and test curves"}},
		Notes: []string{
			fmt.Sprintf("VGG-style net (zoo `vgg`): [32, 32, M, 64, 64, M] 3×3 conv+BN+ReLU, FC 128 with dropout 0.3, on the 60,000 MNIST digits for %d epochs, SGD with momentum 0.9 (lr 0.05, cosine decay, batch 64), no augmentation; %.0f s at %.0f images/s.",
				vggSpec.Epochs, vgg.WallSeconds, vgg.ImagesPerSecond),
			fmt.Sprintf("Degradation: He et al.'s CIFAR nets (zoo `resnet20`, `resnet56`; `shortcut: none` drops every shortcut for the plain nets of the same depth) on Fashion-MNIST padded to 32×32, each for the same %d steps of batch %d (%d epochs of the first %d training images; a subset, so that the four runs fit minutes on two cores), SGD with momentum 0.9, weight decay 10⁻⁴, a constant lr %g (the paper: batch 128, lr 0.1 for its first 32k steps). The same seed for every net. Final training loss is the mean of the last 100 steps' windows in each run's metrics.jsonl: %s.",
				steps, spec.BatchSize, spec.Epochs, spec.TrainLimit, spec.Optimizer.LR, strings.Join(accs, "; ")),
			"Deviations: Fashion-MNIST instead of CIFAR-10, no augmentation, a few hundred steps instead of 64k, one seed, and the residual nets' shortcuts are the identity or, where the shape changes, a 1×1 projection with BatchNorm (the paper's option B; its CIFAR nets used option A, zero-padded identity). The claims are about the ordering of the training losses at equal steps, which is what Figs. 1 and 6 show; the paper's curves are training error, plotted here beside the loss.",
		},
	}
	return res, nil
}
