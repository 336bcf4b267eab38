package repro

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/job"
)

func init() {
	register(Experiment{
		Name:  "backprop-mlp",
		Title: "back-propagation nets on MNIST: 784-300-100-10, and 784-800-10",
		Paper: "LeCun, Bottou, Bengio, Haffner 1998 (Gradient-based learning, Fig. 9: 3.05% for 784-300-100-10); Hinton, Osindero, Teh 2006 (1.53% with 784-800-10 style nets, after Simard et al. 2003)",
		Run:   runBackpropMLP,
	})
}

// mnistJob is the plain supervised job on MNIST the digit experiments
// start from: SGD with momentum 0.9, cosine decay, batch 64. Quick runs
// take a sliver of the data and one epoch.
func mnistJob(env *Env, model string, epochs int, lr float64) job.Spec {
	s := job.Default()
	s.Model, s.Dataset, s.Epochs = model, "mnist", epochs
	s.Optimizer = job.Optimizer{Name: "sgd", LR: lr, Momentum: 0.9}
	s.Schedule = job.Schedule{Name: "cosine"}
	s.KeepCheckpoints = 1
	if env.Quick {
		s.Epochs, s.TrainLimit, s.TestLimit = 1, 640, 200
	}
	return s
}

// errorClaim is a test-error claim: ours is 1 − accuracy, in percent,
// passing at or under bar percent.
func errorClaim(what, paper string, bar, accuracy float64) Claim {
	e := 100 * (1 - accuracy)
	return Claim{What: what, Paper: paper, Target: fmt.Sprintf("≤ %.2f%%", bar), Ours: fmt.Sprintf("%.2f%%", e), Pass: e <= bar}
}

func runBackpropMLP(ctx context.Context, env *Env) (*Result, error) {
	small, err := TrainJob(ctx, env, "mlp-300-100", mnistJob(env, "mlp", 10, 0.05), 0, 0.4)
	if err != nil {
		return nil, err
	}
	wide, err := TrainJob(ctx, env, "mlp-800", mnistJob(env, "mlp800", 10, 0.05), 0.4, 0.6)
	if err != nil {
		return nil, err
	}
	wideClaim := errorClaim("test error, 784-800-10, 10 epochs", "1.53% (Hinton et al. 2006); 1.6% (Simard et al. 2003)", 1.6, wide.TestAccuracy)
	wideClaim.Stretch = true
	res := &Result{
		Claims: []Claim{
			errorClaim("test error, 784-300-100-10, 10 epochs", "3.05%", 3.05, small.TestAccuracy),
			wideClaim,
		},
		Notes: []string{
			"Both nets use ReLU units, softmax cross-entropy and SGD with momentum 0.9 (lr 0.05, cosine decay, batch 64) on the 60,000 training digits, without distortions; the 1998 paper's nets used sigmoid units and a mean-squared error.",
			fmt.Sprintf("Wall time of training: %.0f s and %.0f s (%.0f and %.0f images/s).", small.WallSeconds, wide.WallSeconds, small.ImagesPerSecond, wide.ImagesPerSecond),
		},
	}
	for _, r := range []string{"mlp-300-100", "mlp-800"} {
		res.Figures = append(res.Figures, Figure{File: "runs/" + r + "/curves.png", Caption: r + ": training and test curves"})
	}
	return res, nil
}
