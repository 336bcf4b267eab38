package repro

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

func init() {
	register(Experiment{
		Name:  "deepmask",
		Title: "DeepMask-style object proposals: a mask and an objectness score per window, on MNIST scenes",
		Paper: "Pinheiro, Collobert, Dollár 2015 (Learning to segment object candidates: a shared trunk, a mask head and an objectness head, trained on windows centred on objects or not)",
		Run:   runDeepMask,
	})
}

// deepMaskConfig sizes deepmask.
type deepMaskConfig struct {
	steps      int     // training steps
	half       int     // positives (and negatives) per batch
	lr         float64 // Adam's, decayed to 0 on a cosine
	jitter     int     // positives' centres move up to ±jitter pixels
	margin     float64 // negatives' centres lie farther than this from every digit's centre
	testScenes int
}

// maskNet is the net: a conv trunk on a 32×32 window, a mask head (a
// coarse 32×32 map from a linear layer, refined at full resolution with
// the window) and an objectness head.
type maskNet struct {
	store                        paramStore
	c1w, c1b, c2w, c2b, c3w, c3b int
	m1w, m1b, m2w, m2b           int // mask head: 2048 → 256 → 1024
	r1w, r1b, r2w, r2b           int // refinement: (window, coarse) → 16 → 1
	o1w, o1b, o2w, o2b           int // objectness: 2048 → 128 → 1
}

func newMaskNet(rng *rand.Rand) (*maskNet, error) {
	s := &maskNet{store: newParamStore(rng)}
	p := &s.store
	kn := models.KaimingNormal(0, models.FanIn)
	s.c1w, s.c1b = p.add(kn, 16, 1, 5, 5), p.add(models.Zeros(), 16)
	s.c2w, s.c2b = p.add(kn, 32, 16, 3, 3), p.add(models.Zeros(), 32)
	s.c3w, s.c3b = p.add(kn, 32, 32, 3, 3), p.add(models.Zeros(), 32)
	s.m1w, s.m1b = p.add(kn, 256, 2048), p.add(models.Zeros(), 256)
	s.m2w, s.m2b = p.add(models.LeCunNormal(), 1024, 256), p.add(models.Zeros(), 1024)
	s.r1w, s.r1b = p.add(kn, 16, 2, 3, 3), p.add(models.Zeros(), 16)
	s.r2w, s.r2b = p.add(models.LeCunNormal(), 1, 16, 3, 3), p.add(models.Zeros(), 1)
	s.o1w, s.o1b = p.add(kn, 128, 2048), p.add(models.Zeros(), 128)
	s.o2w, s.o2b = p.add(models.LeCunNormal(), 1, 128), p.add(models.Zeros(), 1)
	return s, p.build()
}

// forward records the net on tp for windows x (N, 1, 32, 32) and returns
// the mask logits (N, 1, 32, 32) of the first nMask windows (nil when 0)
// and the objectness logits (N, 1).
func (s *maskNet) forward(tp *tensorcore.Tape, x *tensorcore.Tensor, nMask int) (mask, obj *tensorcore.Var) {
	p := func(i int) *tensorcore.Var { return s.store.param(tp, i) }
	n := x.Shape[0]
	xv := tp.Const(x)
	pad1 := tensorcore.ConvParams{PadH: 1, PadW: 1}
	h := tp.MaxPool2D(tp.ReLU(tp.Conv2D(xv, p(s.c1w), p(s.c1b), tensorcore.ConvParams{PadH: 2, PadW: 2})), 2, 2, 0) // (N, 16, 16, 16)
	h = tp.MaxPool2D(tp.ReLU(tp.Conv2D(h, p(s.c2w), p(s.c2b), pad1)), 2, 2, 0)                                      // (N, 32, 8, 8)
	h = tp.ReLU(tp.Conv2D(h, p(s.c3w), p(s.c3b), pad1))                                                             // (N, 32, 8, 8)
	feat := tp.Reshape(h, n, 2048)
	o := tp.ReLU(tp.Linear(feat, p(s.o1w), p(s.o1b)))
	obj = tp.Linear(o, p(s.o2w), p(s.o2b)) // (N, 1)
	if nMask == 0 {
		return nil, obj
	}
	if nMask < n {
		feat = tp.Slice(feat, 0, 0, nMask)
		xv = tp.Slice(xv, 0, 0, nMask)
	}
	m := tp.ReLU(tp.Linear(feat, p(s.m1w), p(s.m1b)))
	coarse := tp.Reshape(tp.Linear(m, p(s.m2w), p(s.m2b)), nMask, 1, windowSize, windowSize)
	r := tp.ReLU(tp.Conv2D(tp.Concat(1, xv, coarse), p(s.r1w), p(s.r1b), pad1)) // (nMask, 16, 32, 32)
	mask = tp.Add(coarse, tp.Conv2D(r, p(s.r2w), p(s.r2b), pad1))
	return mask, obj
}

func runDeepMask(ctx context.Context, env *Env) (*Result, error) {
	cfg := deepMaskConfig{steps: 3000, half: 32, lr: 1e-3, jitter: 2, margin: 8, testScenes: 2000}
	if env.Quick {
		cfg.steps, cfg.testScenes = 20, 50
	}
	train, test, err := mnistImages(ctx, env)
	if err != nil {
		return nil, err
	}
	for _, m := range []*dataset.MNIST{train, test} {
		if m.N == 0 || m.Rows != digitSize || m.Cols != digitSize {
			return nil, fmt.Errorf("mnist: %d images of %d×%d, want some of %d×%d", m.N, m.Rows, m.Cols, digitSize, digitSize)
		}
	}
	pool := tensorcore.NewPool(env.Threads)
	defer pool.Close()
	net, err := newMaskNet(rand.New(rand.NewPCG(env.Seed, 0xdee9)))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	losses, err := trainMaskNet(ctx, env, pool, net, train, cfg)
	if err != nil {
		return nil, err
	}
	trainSec := time.Since(start).Seconds()
	ev, err := evalMaskNet(ctx, pool, net, test, cfg, rand.New(rand.NewPCG(env.Seed, 0x7e57)))
	if err != nil {
		return nil, err
	}
	env.Logf("deepmask: mean IoU %.4f over %d digits, objectness AUC %.4f (near misses), %.4f (anywhere)", ev.meanIoU, ev.digits, ev.auc, ev.aucAny)

	res := &Result{
		Claims: []Claim{
			{What: "mean mask IoU on test digits, window centred on the digit", Paper: "DeepMask segments the centred object (COCO: no MNIST figure)",
				Target: "≥ 0.80", Ours: fmt.Sprintf("%.3f", ev.meanIoU), Pass: ev.meanIoU >= 0.80},
			{What: "objectness ROC AUC, centred test windows vs near misses (centre 8–16 pixels from a digit's, > 8 from all)", Paper: "DeepMask scores whether a window is centred on an object",
				Target: "≥ 0.95", Ours: fmt.Sprintf("%.4f", ev.auc), Pass: ev.auc >= 0.95},
		},
		Notes: []string{
			fmt.Sprintf("Scenes: 48×48 canvases of 1–3 MNIST digits (training digits for training, test digits for test) at random positions with centres ≥ 10 pixels apart; overlapping digits take the brighter pixel. A digit's mask is its own pixels above 0.5, whatever covers them. "+
				"Positives: 32×32 windows centred on a digit (its box's centre) within ±%d pixels, mask target that digit's pixels in the window. Negatives: windows whose centre lies more than %.0f pixels from every digit's centre; half of them near misses, between %.0f and %.0f pixels from one digit's centre, half anywhere on the canvas.", cfg.jitter, cfg.margin, cfg.margin, 2*cfg.margin),
			fmt.Sprintf("Net: trunk conv5×5·16 → pool → conv3×3·32 → pool → conv3×3·32 (8×8×32 = 2048 features). Mask head: linear 2048 → 256 → 1024 (a 32×32 map, as DeepMask's linear mask layer), refined at full resolution by conv3×3·16 → conv3×3·1 over (window, map), added to the map. "+
				"Objectness head: linear 2048 → 128 → 1. Loss: binary cross-entropy of the masks on the positives plus binary cross-entropy of objectness on all windows. "+
				"Adam (lr %.0e, cosine decay), %d steps of %d positives and %d negatives drawn from fresh training scenes (%d parameters); training took %.0f s.",
				cfg.lr, cfg.steps, cfg.half, cfg.half, len(net.store.data), trainSec),
			fmt.Sprintf("Test: %d scenes of test digits, %d digits. IoU of the mask thresholded at logit 0 against the digit's mask, on the window centred on each digit (no jitter); mean %.3f, median %.3f, %.1f%% of digits at IoU ≥ 0.7. "+
				"Objectness AUC over the %d centred windows against %d near misses (one per digit): %.4f; against %d negatives anywhere on the canvas: %.4f (the easy case: many such windows hold little ink). At threshold 0.5 objectness accepts %.1f%% of positives and %.1f%% of near misses.",
				cfg.testScenes, ev.digits, ev.meanIoU, ev.medianIoU, 100*ev.iou07, ev.digits, ev.digits, ev.auc, ev.digits, ev.aucAny, 100*ev.tpr, 100*ev.fprNear),
			"Deviations from DeepMask: a small trunk trained from scratch instead of a pre-trained VGG; one scale; a full-resolution refinement of the linear mask layer's output (in the spirit of SharpMask) instead of bilinear upsampling; objectness and mask losses weighted 1:1.",
		},
	}
	steps := make([]float64, len(losses))
	for i := range steps {
		steps[i] = float64((i + 1) * lossEvery)
	}
	fig, err := LinePlot{Title: "deepmask: training loss", XLabel: "step", YLabel: "loss (mean of the last 50 steps)",
		Series: []Series{{Name: "mask BCE + objectness BCE", X: steps, Y: losses}}}.Write(env, "deepmask-loss.png", "training loss")
	if err != nil {
		return nil, err
	}
	res.Figures = append(res.Figures, fig)
	fig, err = proposalFigure(pool, net, test, env, rand.New(rand.NewPCG(env.Seed, 0xf16)))
	if err != nil {
		return nil, err
	}
	res.Figures = append(res.Figures, fig)
	return res, nil
}

const lossEvery = 50

// trainMaskNet trains net on windows of fresh training scenes and returns
// the mean loss of each lossEvery steps.
func trainMaskNet(ctx context.Context, env *Env, pool *tensorcore.Pool, net *maskNet, set *dataset.MNIST, cfg deepMaskConfig) ([]float64, error) {
	opt, err := models.NewAdam(net.store.data, net.store.grad, models.DefaultAdam())
	if err != nil {
		return nil, err
	}
	models.UsePool(opt, pool)
	rng := rand.New(rand.NewPCG(env.Seed, 0xdee7))
	const win = windowSize * windowSize
	n := 2 * cfg.half
	x := tensorcore.New(n, 1, windowSize, windowSize)
	target := tensorcore.New(cfg.half, 1, windowSize, windowSize)
	objTarget := tensorcore.New(n, 1)
	for i := range cfg.half {
		objTarget.Data[i] = 1
	}
	tp := tensorcore.NewTape(pool)
	var losses []float64
	var sum float64
	for step := range cfg.steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for i := range cfg.half {
			s := newScene(set, rng)
			d := rng.IntN(len(s.digits))
			cr, cc := s.digits[d].centre()
			cr += rng.IntN(2*cfg.jitter+1) - cfg.jitter
			cc += rng.IntN(2*cfg.jitter+1) - cfg.jitter
			s.window(x.Data[i*win:(i+1)*win], cr, cc)
			s.mask(target.Data[i*win:(i+1)*win], set, d, cr, cc)
		}
		for i := cfg.half; i < n; i++ {
			s := newScene(set, rng)
			cr, cc, err := s.negativeCentre(rng, cfg.margin, i%2 == 0)
			if err != nil {
				return nil, err
			}
			s.window(x.Data[i*win:(i+1)*win], cr, cc)
		}
		tp.Reset()
		clear(net.store.grad)
		mask, obj := net.forward(tp, x, cfg.half)
		loss := tp.Add(tp.BCEWithLogits(mask, tp.Const(target)), tp.BCEWithLogits(obj, tp.Const(objTarget)))
		tp.Backward(loss)
		lr := cfg.lr * 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(cfg.steps)))
		opt.Step(float32(lr))
		sum += float64(loss.Value.Data[0])
		if (step+1)%lossEvery == 0 {
			losses = append(losses, sum/lossEvery)
			env.Logf("deepmask: step %d, loss %.4f", step+1, sum/lossEvery)
			sum = 0
		}
		env.progress(0.9 * float64(step+1) / float64(cfg.steps))
	}
	if len(losses) == 0 {
		losses = append(losses, sum/float64(max(cfg.steps, 1)))
	}
	return losses, nil
}

// maskEval is what evalMaskNet measured.
type maskEval struct {
	digits             int
	meanIoU, medianIoU float64
	iou07              float64 // fraction of digits at IoU ≥ 0.7
	auc, aucAny        float64 // against near-miss negatives, against negatives anywhere
	tpr, fprNear       float64 // objectness > 0.5 on positives, near-miss negatives
}

// evalMaskNet measures the masks of windows centred on the digits of
// fresh test scenes, and objectness on those windows against one
// near-miss negative and one negative anywhere per digit.
func evalMaskNet(ctx context.Context, pool *tensorcore.Pool, net *maskNet, set *dataset.MNIST, cfg deepMaskConfig, rng *rand.Rand) (maskEval, error) {
	const win = windowSize * windowSize
	// Rows of windows: positives, then near misses, then anywhere.
	var posX, targets, nearX, anyX []float32
	for range cfg.testScenes {
		if err := ctx.Err(); err != nil {
			return maskEval{}, err
		}
		s := newScene(set, rng)
		for d := range s.digits {
			cr, cc := s.digits[d].centre()
			posX, targets = slices.Grow(posX, win)[:len(posX)+win], slices.Grow(targets, win)[:len(targets)+win]
			s.window(posX[len(posX)-win:], cr, cc)
			s.mask(targets[len(targets)-win:], set, d, cr, cc)
			for _, near := range []bool{true, false} {
				r, c, err := s.negativeCentre(rng, cfg.margin, near)
				if err != nil {
					return maskEval{}, err
				}
				dst := &anyX
				if near {
					dst = &nearX
				}
				*dst = slices.Grow(*dst, win)[:len(*dst)+win]
				s.window((*dst)[len(*dst)-win:], r, c)
			}
		}
	}
	n := len(posX) / win
	all := slices.Concat(posX, nearX, anyX)
	const batch = 256
	tp := tensorcore.NewTape(pool)
	scores := make([]float64, 0, 3*n)
	var ious []float64
	for lo := 0; lo < 3*n; lo += batch {
		hi := min(lo+batch, 3*n)
		nMask := max(0, min(hi, n)-lo)
		tp.Reset()
		mask, obj := net.forward(tp, tensorcore.FromSlice(all[lo*win:hi*win], hi-lo, 1, windowSize, windowSize), nMask)
		for i := range nMask {
			ious = append(ious, maskIoU(mask.Value.Data[i*win:(i+1)*win], targets[(lo+i)*win:(lo+i+1)*win]))
		}
		for _, v := range obj.Value.Data {
			scores = append(scores, float64(v))
		}
	}
	pos, near, anywhere := scores[:n], scores[n:2*n], scores[2*n:]
	ev := maskEval{digits: n}
	var err error
	if ev.auc, err = rocAUC(pos, near); err != nil {
		return maskEval{}, err
	}
	if ev.aucAny, err = rocAUC(pos, anywhere); err != nil {
		return maskEval{}, err
	}
	for _, v := range ious {
		ev.meanIoU += v
		if v >= 0.7 {
			ev.iou07++
		}
	}
	ev.meanIoU /= float64(n)
	ev.iou07 /= float64(n)
	sorted := slices.Sorted(slices.Values(ious))
	ev.medianIoU = sorted[n/2]
	for i := range n {
		if pos[i] > 0 {
			ev.tpr++
		}
		if near[i] > 0 {
			ev.fprNear++
		}
	}
	ev.tpr /= float64(n)
	ev.fprNear /= float64(n)
	return ev, nil
}

// proposalFigure scores windows centred on every other pixel of a few
// test scenes, keeps the best-scoring centres at least 8 pixels apart
// (at most 3, objectness > 0.5) and draws each scene above the same scene
// with the kept proposals' masks in colour, 4× enlarged.
func proposalFigure(pool *tensorcore.Pool, net *maskNet, set *dataset.MNIST, env *Env, rng *rand.Rand) (Figure, error) {
	const scenes, scale, gap, stride = 6, 4, 8, 2
	const win = windowSize * windowSize
	const grid = sceneSize / stride
	side := sceneSize * scale
	img := image.NewRGBA(image.Rect(0, 0, scenes*(side+gap)+gap, 2*side+3*gap))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	tp := tensorcore.NewTape(pool)
	x := tensorcore.New(grid*grid, 1, windowSize, windowSize)
	total := 0
	for k := range scenes {
		s := newScene(set, rng)
		for gr := range grid {
			for gc := range grid {
				i := gr*grid + gc
				s.window(x.Data[i*win:(i+1)*win], gr*stride, gc*stride)
			}
		}
		tp.Reset()
		mask, obj := net.forward(tp, x, grid*grid)
		order := make([]int, grid*grid)
		for i := range order {
			order[i] = i
		}
		scores := obj.Value.Data
		slices.SortStableFunc(order, func(a, b int) int {
			switch {
			case scores[a] > scores[b]:
				return -1
			case scores[a] < scores[b]:
				return 1
			}
			return 0
		})
		var kept []int
		for _, i := range order {
			if len(kept) == 3 || scores[i] <= 0 {
				break
			}
			if slices.ContainsFunc(kept, func(j int) bool {
				return math.Hypot(float64(i/grid-j/grid), float64(i%grid-j%grid))*stride < 8
			}) {
				continue
			}
			kept = append(kept, i)
		}
		total += len(kept)
		// Top: the scene. Bottom: the scene dimmed, with the masks.
		x0 := gap + k*(side+gap)
		var tint [sceneSize * sceneSize]color.RGBA
		var has [sceneSize * sceneSize]bool
		for rank, i := range kept {
			cr, cc := (i/grid)*stride, (i%grid)*stride
			m := mask.Value.Data[i*win : (i+1)*win]
			for r := range windowSize {
				for c := range windowSize {
					y, xx := cr-windowSize/2+r, cc-windowSize/2+c
					if m[r*windowSize+c] > 0 && y >= 0 && y < sceneSize && xx >= 0 && xx < sceneSize && !has[y*sceneSize+xx] {
						has[y*sceneSize+xx], tint[y*sceneSize+xx] = true, Color(rank)
					}
				}
			}
		}
		for y := range sceneSize {
			for xx := range sceneSize {
				v := uint8(255 * (1 - s.pixels[y*sceneSize+xx]))
				top := color.RGBA{v, v, v, 255}
				bottom := color.RGBA{uint8(155 + uint16(v)*100/255), uint8(155 + uint16(v)*100/255), uint8(155 + uint16(v)*100/255), 255}
				if has[y*sceneSize+xx] {
					bottom = tint[y*sceneSize+xx]
				}
				for dy := range scale {
					for dx := range scale {
						img.SetRGBA(x0+xx*scale+dx, gap+y*scale+dy, top)
						img.SetRGBA(x0+xx*scale+dx, 2*gap+side+y*scale+dy, bottom)
					}
				}
			}
		}
		// A cross at each kept proposal's centre.
		for _, i := range kept {
			cy, cx := 2*gap+side+(i/grid)*stride*scale, x0+(i%grid)*stride*scale
			for d := -6; d <= 6; d++ {
				img.SetRGBA(cx+d, cy, color.RGBA{0, 0, 0, 255})
				img.SetRGBA(cx, cy+d, color.RGBA{0, 0, 0, 255})
			}
		}
	}
	const file = "deepmask-proposals.png"
	f, err := os.Create(filepath.Join(env.Dir, file))
	if err != nil {
		return Figure{}, fmt.Errorf("deepmask: %w", err)
	}
	err = png.Encode(f, img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Figure{}, fmt.Errorf("deepmask: %s: %w", file, err)
	}
	return Figure{File: file, Caption: fmt.Sprintf("%d test scenes (top) and their proposals (bottom): windows centred on every other pixel, the best-scoring centres ≥ 8 pixels apart with objectness > 0.5, at most 3 per scene (%d in all), each mask in its own colour, a cross at its window's centre", scenes, total)}, nil
}
