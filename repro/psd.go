package repro

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

func init() {
	register(Experiment{
		Name:  "psd",
		Title: "predictive sparse decomposition: a feed-forward encoder that predicts sparse codes, and what the codes give a linear classifier",
		Paper: "Kavukcuoglu, Ranzato, LeCun 2008 (Fast inference in sparse coding algorithms with applications to object recognition: PSD), with the shrinkage encoder of Kavukcuoglu et al. 2010 (Learning convolutional feature hierarchies for visual recognition); side checks on MNIST: PCA's 95% variance (154 components), k-means clustering accuracy",
		Run:   runPSD,
	})
}

// psdForm is the form of PSD's encoder.
type psdForm int

const (
	// psdShrink is F(x) = h_θ(W·x), a soft threshold θ per unit: the
	// sharp limit of the smooth shrinkage encoder of Kavukcuoglu et al.
	// 2010, which can output exact zeros.
	psdShrink psdForm = iota
	// psdTanh is F(x) = g ⊙ tanh(W·x + b), the encoder of Kavukcuoglu,
	// Ranzato & LeCun 2008.
	psdTanh
)

// String returns the form's formula, for logs.
func (f psdForm) String() string {
	if f == psdShrink {
		return "h_θ(W x)"
	}
	return "g ⊙ tanh(W x + b)"
}

// psdEncoder predicts codes in one of the psdForm forms: W (N, M) and b
// (N) (θ for psdShrink), and for psdTanh a gain g (N), in one arena
// (params and grad are its flat values and gradients).
type psdEncoder struct {
	n, m         int
	form         psdForm
	store        paramStore
	w, b, g      int // indices in store
	params, grad []float32
}

// newPSDEncoder returns an encoder of the given form for the dictionary
// d. The shrinkage encoder starts as ISTA's first step from zero
// (W = D/L, θ = λ/L); the tanh encoder from the atoms as filters and a
// small gain.
func newPSDEncoder(d *Dict, lambda float32, form psdForm) (*psdEncoder, error) {
	e := &psdEncoder{n: d.N, m: d.M, form: form, store: newParamStore(nil)}
	if form == psdShrink {
		e.w, e.b = istaStart(&e.store, d, lambda)
	} else {
		e.w = e.store.add(func(dst []float32, _ []int, _ *rand.Rand) { copy(dst, d.Atoms) }, d.N, d.M)
		e.b = e.store.add(models.Zeros(), d.N)
		e.g = e.store.add(models.Constant(0.1), d.N)
	}
	if err := e.store.build(); err != nil {
		return nil, err
	}
	e.params, e.grad = e.store.data, e.store.grad
	return e, nil
}

// forward records the encoder's codes of x (rows, M) on tp.
func (e *psdEncoder) forward(tp *tensorcore.Tape, x *tensorcore.Var) *tensorcore.Var {
	w, b := e.store.param(tp, e.w), e.store.param(tp, e.b)
	if e.form == psdShrink {
		return softThreshold(tp, tp.Linear(x, w, nil), b)
	}
	return tp.Mul(tp.Tanh(tp.Linear(x, w, b)), e.store.param(tp, e.g))
}

// encode returns the encoder's codes of the rows of x.
func (e *psdEncoder) encode(x []float32, rows int) []float32 {
	z := make([]float32, rows*e.n)
	forwardRows(e.forward, z, x, rows, e.m, e.n)
	return z
}

// forwardRows writes into z the outputs (n wide) that forward gives the
// rows (m wide) of x, a thousand rows at a time.
func forwardRows(forward func(*tensorcore.Tape, *tensorcore.Var) *tensorcore.Var, z, x []float32, rows, m, n int) {
	tp := tensorcore.NewTape(nil)
	const batch = 1000
	for b := 0; b < rows; b += batch {
		r := min(batch, rows-b)
		tp.Reset()
		out := forward(tp, tp.Const(tensorcore.FromSlice(x[b*m:(b+r)*m], r, m)))
		copy(z[b*n:], out.Value.Data)
	}
}

// fistaPredicted minimizes ½‖x − Dᵀz‖² + λ‖z‖₁ + ½α‖z − f‖² for the rows
// of x by FISTA from z = f, the energy of PSD's inference.
func (d *Dict) fistaPredicted(z, x, f []float32, rows int, lambda, alpha float32, iters int) {
	n := d.N
	c := make([]float32, rows*n)
	d.Correlate(c, x, rows)
	for i := range c {
		c[i] += alpha * f[i] // the gradient is z·(Gram + αI) − (c + αf)
	}
	z = z[:rows*n]
	copy(z, f[:rows*n])
	y := append([]float32(nil), z...)
	g := make([]float32, rows*n)
	prev := make([]float32, rows*n)
	lip := d.L + alpha
	inv, theta := 1/lip, lambda/lip
	t := 1.0
	for range iters {
		tensorcore.Sgemm(nil, false, false, rows, n, n, 1, y, n, d.Gram, n, 0, g, n)
		copy(prev, z)
		for i := range z {
			z[i] = shrink(y[i]-inv*(g[i]+alpha*y[i]-c[i]), theta)
		}
		tNext := (1 + math.Sqrt(1+4*t*t)) / 2
		beta := float32((t - 1) / tNext)
		t = tNext
		for i := range y {
			y[i] = z[i] + beta*(z[i]-prev[i])
		}
	}
}

// trainPSD learns a dictionary and an encoder together: for each batch,
// the codes minimize the sparse coding energy plus α times the distance
// to the encoder's prediction (FISTA from the prediction), then the atoms
// take a gradient step (and are rescaled to unit norm) and the encoder an
// Adam step towards the codes.
func trainPSD(ctx context.Context, d *Dict, enc *psdEncoder, x []float32, rows int, rng *rand.Rand, lambda, alpha float32,
	epochs, batch, iters int, dictLR, encLR float64, progress func(float64)) error {
	n, m := d.N, d.M
	opt, err := models.NewAdam(enc.params, enc.grad, models.DefaultAdam())
	if err != nil {
		return err
	}
	xb, z := make([]float32, batch*m), make([]float32, batch*n)
	res, grad := make([]float32, batch*m), make([]float32, n*m)
	tp := tensorcore.NewTape(nil)
	for ep := range epochs {
		perm := rng.Perm(rows)
		for b := 0; b+batch <= rows; b += batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i, r := range perm[b : b+batch] {
				copy(xb[i*m:(i+1)*m], x[r*m:(r+1)*m])
			}
			tp.Reset()
			clear(enc.grad)
			f := enc.forward(tp, tp.Const(tensorcore.FromSlice(xb, batch, m)))
			d.fistaPredicted(z, xb, f.Value.Data, batch, lambda, alpha, iters)
			// Atoms: a step down Zᵀ·(Z·Dt − X), then unit norm.
			tensorcore.Sgemm(nil, false, false, batch, m, n, 1, z, n, d.Atoms, m, 0, res, m)
			for i := range res {
				res[i] -= xb[i]
			}
			tensorcore.Sgemm(nil, true, false, n, m, batch, 1, z, n, res, m, 0, grad, m)
			step := float32(dictLR / float64(batch))
			for i := range d.Atoms {
				d.Atoms[i] -= step * grad[i]
			}
			if err := d.normalize(); err != nil {
				return err
			}
			tp.Backward(tp.MSE(f, tp.Const(tensorcore.FromSlice(z, batch, n))))
			opt.Step(float32(encLR))
			if progress != nil {
				progress((float64(ep) + float64(b+batch)/float64(rows)) / float64(epochs))
			}
		}
	}
	return nil
}

// fitEncoder regresses the encoder onto target codes by Adam with a
// cosine-decaying step.
func fitEncoder(ctx context.Context, enc *psdEncoder, x, target []float32, rows int, rng *rand.Rand, epochs, batch int, lr float64) error {
	n, m := enc.n, enc.m
	opt, err := models.NewAdam(enc.params, enc.grad, models.DefaultAdam())
	if err != nil {
		return err
	}
	xb, zb := make([]float32, batch*m), make([]float32, batch*n)
	tp := tensorcore.NewTape(nil)
	total, step := epochs*(rows/batch), 0
	for range epochs {
		perm := rng.Perm(rows)
		for b := 0; b+batch <= rows; b += batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i, r := range perm[b : b+batch] {
				copy(xb[i*m:(i+1)*m], x[r*m:(r+1)*m])
				copy(zb[i*n:(i+1)*n], target[r*n:(r+1)*n])
			}
			tp.Reset()
			clear(enc.grad)
			tp.Backward(tp.MSE(enc.forward(tp, tp.Const(tensorcore.FromSlice(xb, batch, m))), tp.Const(tensorcore.FromSlice(zb, batch, n))))
			opt.Step(float32(lr * 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(total)))))
			step++
		}
	}
	return nil
}

// psdConfig is one PSD recipe and how its encoder is measured.
type psdConfig struct {
	form          psdForm
	alpha         float32 // weight of the prediction term in the energy
	epochs, iters int     // joint training epochs; FISTA iterations per batch
	encLR         float64 // the encoder's Adam step in the joint training
	fitEpochs     int     // epochs of regression onto z* afterwards (0: none)
	nnz           float64 // the fraction of non-zeros λ is tuned for
	tuneRows      int     // rows and FISTA iterations λ is tuned on
	tuneIters     int
	starIters     int // FISTA iterations of the optimal codes z*
	logEpochs     int // logistic regression epochs
}

// psdData is the digits PSD learns from and is measured on: the first
// dictRows rows of x train the dictionary and encoder, the first nTrain
// train the classifiers, and eval (evalRows) measure.
type psdData struct {
	m, dictRows, nTrain, evalRows int
	x, eval                       []float32
	y, evalY                      []int
}

// psdOutcome is what one PSD run gives on the evaluation digits.
type psdOutcome struct {
	lambda           float32 // re-tuned for the final atoms
	jointErr, encErr float64 // code error after the joint training, and after fitting
	accExact, accEnc float64 // logistic regression on z* and on the encoder's codes
	evalNNZ          float64 // fraction of non-zeros of z* on the evaluation digits
}

// psdRun trains an encoder of cfg's form jointly with a copy of the
// dictionary d0 (λ its sparsity weight), re-tunes λ for the final atoms,
// and measures on data.eval the encoder's code error against the FISTA
// codes z* and the accuracy of logistic regression on the encoder's codes
// and on z*.
func psdRun(ctx context.Context, rng *rand.Rand, d0 *Dict, lambda float32, data psdData, cfg psdConfig, progress func(float64)) (psdOutcome, error) {
	var out psdOutcome
	d, err := NewDict(d0.N, d0.M, append([]float32(nil), d0.Atoms...))
	if err != nil {
		return out, err
	}
	m, n := data.m, d.N
	enc, err := newPSDEncoder(d, lambda, cfg.form)
	if err != nil {
		return out, err
	}
	if err := trainPSD(ctx, d, enc, data.x, data.dictRows, rng, lambda, cfg.alpha, cfg.epochs, 100, cfg.iters, 0.5, cfg.encLR,
		func(f float64) { progress(0.7 * f) }); err != nil {
		return out, err
	}
	out.lambda = d.tuneLambda(data.x, min(data.dictRows, cfg.tuneRows), cfg.nnz, cfg.tuneIters)
	xTrain := data.x[:data.nTrain*m]
	zTrain, zEval := make([]float32, data.nTrain*n), make([]float32, data.evalRows*n)
	d.FISTA(zTrain, xTrain, data.nTrain, out.lambda, cfg.starIters, nil)
	d.FISTA(zEval, data.eval, data.evalRows, out.lambda, cfg.starIters, nil)
	out.evalNNZ = nonZeroFraction(zEval)
	progress(0.8)
	fEval := enc.encode(data.eval, data.evalRows)
	out.jointErr = relCodeError(fEval, zEval, data.evalRows, n)
	out.encErr = out.jointErr
	if cfg.fitEpochs > 0 {
		if err := fitEncoder(ctx, enc, xTrain, zTrain, data.nTrain, rng, cfg.fitEpochs, 100, 1e-3); err != nil {
			return out, err
		}
		fEval = enc.encode(data.eval, data.evalRows)
		out.encErr = relCodeError(fEval, zEval, data.evalRows, n)
	}
	progress(0.9)
	if out.accExact, err = logisticAccuracy(ctx, rng, zTrain, data.y[:data.nTrain], zEval, data.evalY, n, cfg.logEpochs, 3e-3); err != nil {
		return out, err
	}
	out.accEnc, err = logisticAccuracy(ctx, rng, enc.encode(xTrain, data.nTrain), data.y[:data.nTrain], fEval, data.evalY, n, cfg.logEpochs, 3e-3)
	return out, err
}

// logisticAccuracy trains multinomial logistic regression (softmax of a
// linear map, Adam, cosine-decaying step) on the d features of the rows
// of xTrain and returns its accuracy on xTest. Features are standardized
// with the training set's mean and deviation first.
func logisticAccuracy(ctx context.Context, rng *rand.Rand, xTrain []float32, yTrain []int, xTest []float32, yTest []int, d, epochs int, lr float64) (float64, error) {
	nTrain, nTest := len(yTrain), len(yTest)
	if len(xTrain) != nTrain*d || len(xTest) != nTest*d {
		return 0, errors.New("repro: logistic regression: features and labels differ in number")
	}
	mean, scale := make([]float64, d), make([]float64, d)
	for i := range nTrain {
		for j := range d {
			mean[j] += float64(xTrain[i*d+j])
		}
	}
	for j := range d {
		mean[j] /= float64(nTrain)
	}
	for i := range nTrain {
		for j := range d {
			e := float64(xTrain[i*d+j]) - mean[j]
			scale[j] += e * e
		}
	}
	for j := range d {
		scale[j] = 1 / math.Max(math.Sqrt(scale[j]/float64(nTrain)), 1e-6)
	}
	standardize := func(x []float32) []float32 {
		out := make([]float32, len(x))
		for i, v := range x {
			j := i % d
			out[i] = float32((float64(v) - mean[j]) * scale[j])
		}
		return out
	}
	xs, xt := standardize(xTrain), standardize(xTest)
	const classes, batch = 10, 100
	params, grad := make([]float32, classes*d+classes), make([]float32, classes*d+classes)
	w, b := tensorcore.FromSlice(params[:classes*d], classes, d), tensorcore.FromSlice(params[classes*d:], classes)
	gw, gb := tensorcore.FromSlice(grad[:classes*d], classes, d), tensorcore.FromSlice(grad[classes*d:], classes)
	opt, err := models.NewAdam(params, grad, models.DefaultAdam())
	if err != nil {
		return 0, err
	}
	xb, yb := make([]float32, batch*d), make([]int, batch)
	tp := tensorcore.NewTape(nil)
	total, step := epochs*(nTrain/batch), 0
	for range epochs {
		perm := rng.Perm(nTrain)
		for s := 0; s+batch <= nTrain; s += batch {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			for i, r := range perm[s : s+batch] {
				copy(xb[i*d:(i+1)*d], xs[r*d:(r+1)*d])
				yb[i] = yTrain[r]
			}
			tp.Reset()
			clear(grad)
			logits := tp.Linear(tp.Const(tensorcore.FromSlice(xb, batch, d)), tp.Param(w, gw), tp.Param(b, gb))
			tp.Backward(tp.CrossEntropy(logits, yb))
			opt.Step(float32(lr * 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(total)))))
			step++
		}
	}
	tp.Reset()
	logits := tp.Linear(tp.Const(tensorcore.FromSlice(xt, nTest, d)), tp.Const(w), tp.Const(b)).Value.Data
	hit := 0
	for i := range nTest {
		best := 0
		for c := range classes {
			if logits[i*classes+c] > logits[i*classes+best] {
				best = c
			}
		}
		if best == yTest[i] {
			hit++
		}
	}
	return float64(hit) / float64(nTest), nil
}

// pcaSpectrum returns the eigenvalues of the covariance of the rows of x
// (rows, d), largest first, from gonum's SVD of the covariance matrix.
func pcaSpectrum(x []float32, rows, d int) ([]float64, error) {
	if rows < 2 || len(x) != rows*d {
		return nil, fmt.Errorf("repro: PCA of %d values as %d rows of %d", len(x), rows, d)
	}
	cov32 := centeredGram(x, rows, d)
	cov := mat.NewDense(d, d, nil)
	for i := range d {
		for j := range d {
			cov.Set(i, j, float64(cov32[i*d+j])/float64(rows-1))
		}
	}
	var svd mat.SVD
	if !svd.Factorize(cov, mat.SVDNone) {
		return nil, errors.New("repro: PCA: SVD did not converge")
	}
	return svd.Values(nil), nil
}

// componentsFor returns the fewest leading components whose eigenvalues
// sum to the fraction frac of the total.
func componentsFor(eig []float64, frac float64) int {
	var total float64
	for _, v := range eig {
		total += v
	}
	var s float64
	for i, v := range eig {
		s += v
		if s >= frac*total {
			return i + 1
		}
	}
	return len(eig)
}

// kmeans clusters the rows of x (rows, d) into k by Lloyd's iterations
// from a k-means++ start, until no assignment changes or maxIter; it
// returns the assignment and the inertia (sum of squared distances).
func kmeans(ctx context.Context, rng *rand.Rand, x []float32, rows, d, k, maxIter int) ([]int, float64, error) {
	if rows < k || len(x) != rows*d {
		return nil, 0, fmt.Errorf("repro: k-means of %d rows into %d", rows, k)
	}
	sq := make([]float64, rows)
	for i := range rows {
		for _, v := range x[i*d : (i+1)*d] {
			sq[i] += float64(v) * float64(v)
		}
	}
	centers := make([]float32, k*d)
	// k-means++: each next center drawn with probability ∝ D².
	dist := make([]float64, rows)
	for i := range dist {
		dist[i] = math.Inf(1)
	}
	pick := rng.IntN(rows)
	for c := range k {
		copy(centers[c*d:(c+1)*d], x[pick*d:(pick+1)*d])
		var total float64
		for i := range rows {
			var s float64
			for j, v := range x[i*d : (i+1)*d] {
				e := float64(v - centers[c*d+j])
				s += e * e
			}
			dist[i] = min(dist[i], s)
			total += dist[i]
		}
		r := rng.Float64() * total
		pick = rows - 1
		for i, v := range dist {
			if r -= v; r <= 0 {
				pick = i
				break
			}
		}
	}
	assign := make([]int, rows)
	for i := range assign {
		assign[i] = -1
	}
	dots := make([]float32, rows*k)
	csq := make([]float64, k)
	sums := make([]float64, k*d)
	counts := make([]int, k)
	var inertia float64
	for range maxIter {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		tensorcore.Sgemm(nil, false, true, rows, k, d, 1, x, d, centers, d, 0, dots, k)
		for c := range k {
			csq[c] = 0
			for _, v := range centers[c*d : (c+1)*d] {
				csq[c] += float64(v) * float64(v)
			}
		}
		changed := 0
		inertia = 0
		for i := range rows {
			best, bd := 0, math.Inf(1)
			for c := range k {
				if dd := sq[i] - 2*float64(dots[i*k+c]) + csq[c]; dd < bd {
					best, bd = c, dd
				}
			}
			if assign[i] != best {
				changed++
				assign[i] = best
			}
			inertia += max(bd, 0)
		}
		if changed == 0 {
			break
		}
		clear(sums)
		clear(counts)
		for i, c := range assign {
			counts[c]++
			for j, v := range x[i*d : (i+1)*d] {
				sums[c*d+j] += float64(v)
			}
		}
		for c := range k {
			if counts[c] == 0 { // an empty cluster keeps its center
				continue
			}
			for j := range d {
				centers[c*d+j] = float32(sums[c*d+j] / float64(counts[c]))
			}
		}
	}
	return assign, inertia, nil
}

func runPSD(ctx context.Context, env *Env) (*Result, error) {
	const side, atoms, nnz, alpha, encLR = 12, 196, 0.10, 1.0, 3e-3
	nPCA, nKMeans, kmInits := 60000, 60000, 3
	nTrain, nTest, tuneRows, tuneIters := 20000, 10000, 500, 100
	dictRows, dictEpochs, psdEpochs, fitEpochs, starIters, logEpochs := 20000, 3, 6, 10, 200, 15
	if env.Quick {
		nPCA, nKMeans, kmInits = 1000, 1000, 1
		nTrain, nTest, tuneRows, tuneIters = 600, 300, 100, 30
		dictRows, dictEpochs, psdEpochs, fitEpochs, starIters, logEpochs = 600, 1, 1, 1, 30, 1
	}
	rng := rand.New(rand.NewPCG(env.Seed, 0x95d))
	trainSet, testSet, err := mnistSplits(ctx, env)
	if err != nil {
		return nil, err
	}
	res := &Result{}

	// Side checks on 28×28 digits, pixels in [0, 1].
	t0 := time.Now()
	x28, y28, err := digitVectors(trainSet, max(nPCA, nKMeans), 28, false)
	if err != nil {
		return nil, err
	}
	eig, err := pcaSpectrum(x28[:nPCA*784], nPCA, 784)
	if err != nil {
		return nil, err
	}
	pcs := componentsFor(eig, 0.95)
	env.Logf("psd: PCA: %d components for 95%% of the variance", pcs)
	env.progress(0.05)
	bestAcc, bestInertia, accs := 0.0, math.Inf(1), []float64{}
	for range kmInits {
		assign, inertia, err := kmeans(ctx, rng, x28[:nKMeans*784], nKMeans, 784, 10, 300)
		if err != nil {
			return nil, err
		}
		acc, err := clusterAccuracy(assign, y28[:nKMeans], 10)
		if err != nil {
			return nil, err
		}
		accs = append(accs, acc)
		if inertia < bestInertia {
			bestAcc, bestInertia = acc, inertia
		}
	}
	env.Logf("psd: k-means accuracies %v; lowest inertia's %.4f", accs, bestAcc)
	sideTime := time.Since(t0)
	env.progress(0.15)

	// PSD on 12×12 digits of unit norm.
	t1 := time.Now()
	xTrain, yTrain, err := digitVectors(trainSet, max(nTrain, dictRows), side, true)
	if err != nil {
		return nil, err
	}
	xTest, yTest, err := digitVectors(testSet, nTest, side, true)
	if err != nil {
		return nil, err
	}
	m := side * side
	d, lambda, err := learnDict(ctx, rng, xTrain, dictRows, m, atoms, dictEpochs, 100, 50, nnz, 0.5, tuneRows, tuneIters,
		func(f float64) { env.progress(0.15 + 0.15*f) })
	if err != nil {
		return nil, err
	}
	data := psdData{m: m, dictRows: dictRows, nTrain: nTrain, evalRows: nTest, x: xTrain, y: yTrain, eval: xTest, evalY: yTest}
	cfg := psdConfig{alpha: alpha, epochs: psdEpochs, iters: 20, encLR: encLR, fitEpochs: fitEpochs,
		nnz: nnz, tuneRows: tuneRows, tuneIters: tuneIters, starIters: starIters, logEpochs: logEpochs}
	var outs [2]psdOutcome // shrinkage, tanh
	for i, form := range []psdForm{psdShrink, psdTanh} {
		c := cfg
		c.form = form
		if outs[i], err = psdRun(ctx, rng, d, lambda, data, c, func(f float64) { env.progress(0.3 + 0.325*(float64(i)+f)) }); err != nil {
			return nil, err
		}
		env.Logf("psd: encoder %v: code error %.4f after the joint training, %.4f after the regression; accuracy %.4f, FISTA codes %.4f",
			form, outs[i].jointErr, outs[i].encErr, outs[i].accEnc, outs[i].accExact)
	}
	accRaw, err := logisticAccuracy(ctx, rng, xTrain[:nTrain*m], yTrain[:nTrain], xTest, yTest, m, logEpochs, 3e-3)
	if err != nil {
		return nil, err
	}
	psdTime := time.Since(t1)
	env.Logf("psd: logistic regression on pixels %.4f", accRaw)

	pct := func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }
	sh, th := outs[0], outs[1]
	res.Claims = []Claim{
		{What: "PSD encoder h_θ(W x) trained jointly with the dictionary: code error ‖F(x) − z*‖²/‖z*‖² on the test digits", Paper: "the encoder predicts the optimal codes closely",
			Target: "≤ 0.30", Ours: fmt.Sprintf("%.4f", sh.encErr), Pass: sh.encErr <= 0.3},
		{What: "logistic regression test accuracy, PSD encoder codes against FISTA codes", Paper: "predicted codes classify about as well as optimal codes",
			Target: "within 1.0 point of FISTA codes (" + pct(sh.accExact) + ")", Ours: pct(sh.accEnc), Pass: math.Abs(sh.accEnc-sh.accExact) <= 0.01},
		{What: "logistic regression test accuracy, codes against raw pixels", Paper: "sparse codes beat raw pixels for a linear classifier",
			Target: "both codes > pixels (" + pct(accRaw) + ")", Ours: fmt.Sprintf("encoder %s, FISTA %s", pct(sh.accEnc), pct(sh.accExact)), Pass: sh.accEnc > accRaw && sh.accExact > accRaw},
		{What: "the 2008 encoder g ⊙ tanh(W x + b) in the same PSD training: code error; logistic regression accuracy on its codes (FISTA codes of its dictionary " + pct(th.accExact) + ")",
			Paper:  "Kavukcuoglu, Ranzato & LeCun 2008's encoder form",
			Target: "≤ 0.30; within 1.0 point of FISTA codes", Ours: fmt.Sprintf("%.4f; %s", th.encErr, pct(th.accEnc)), Pass: th.encErr <= 0.3 && math.Abs(th.accEnc-th.accExact) <= 0.01, Stretch: true},
		{What: "PCA of 28×28 MNIST training digits: components for 95% of the variance", Paper: "about 154",
			Target: "149–159", Ours: fmt.Sprintf("%d", pcs), Pass: pcs >= 149 && pcs <= 159},
		{What: "k-means (k = 10, k-means++) clustering accuracy on 28×28 MNIST training digits, best one-to-one label map", Paper: "about 50–58%",
			Target: "50–58%", Ours: pct(bestAcc), Pass: bestAcc >= 0.50 && bestAcc <= 0.58},
	}
	res.Notes = append(res.Notes,
		fmt.Sprintf("PSD setup: MNIST digits area-downsampled to %d×%d (%d-D) and scaled to unit norm; %d atoms. A dictionary is first learned by plain sparse coding (%d epochs on %d digits, FISTA codes and a gradient step on the atoms, λ re-tuned by bisection for %.0f%% non-zeros), "+
			"then PSD trains a copy of it jointly with the encoder for %d epochs: each batch's codes minimize ½‖x − Dz‖² + λ‖z‖₁ + (α/2)‖z − F(x)‖² (α = %g, %d FISTA iterations from F(x)), "+
			"the atoms take a gradient step and are rescaled to unit norm, the encoder an Adam step (%g) towards the codes. λ is then re-tuned for the final atoms (%.4f with the shrinkage encoder, %.4f with the tanh one).",
			side, side, m, atoms, dictEpochs, dictRows, 100*nnz, cfg.epochs, cfg.alpha, cfg.iters, cfg.encLR, sh.lambda, th.lambda),
		"Encoder forms: the claimed one is F(x) = h_θ(W x) with a threshold per unit (W = D/L and θ = λ/L at the start), the sharp limit of the smooth shrinkage encoder of Kavukcuoglu, Sermanet, Boureau, Gregor, Mathieu & LeCun 2010, which replaced the 2008 g ⊙ tanh(W x + b) because tanh cannot output zeros; "+
			"the 2008 form is trained by the same recipe from the same dictionary and reported beside it.",
		"Recipe chosen on validation digits (training digits 50,001–60,000, which nothing trains on), the test digits used once after: with the shrinkage encoder, α = 1, 6 epochs, "+
			"step 1e-3 and no regression afterwards gave code error 0.273 and encoder codes 1.51 points above FISTA codes; step 3e-3, 0.218 and +1.02; step 3e-3 with 50 FISTA iterations per batch, 0.205 and +0.90; "+
			"step 3e-3 then 10 epochs of regression onto z*, 0.180 and +0.61 (chosen: the widest margin on both bars). The tanh encoder gave 0.593 and −1.78 (step 1e-3, regression after); with the prediction term weighted more and trained longer (α = 4, 12 epochs, step 3e-3, regression after), 0.576 and −1.91.",
		fmt.Sprintf("Optimal codes z*: FISTA, %d iterations, from zero, on the first %d training and %d test digits (%.1f%% non-zeros on test). "+
			"Code error after the joint training: %.4f (shrinkage), %.4f (tanh); after %d epochs of regression onto the training digits' z* (the prediction term alone): %.4f and %.4f, the figures claimed.",
			cfg.starIters, nTrain, nTest, 100*sh.evalNNZ, sh.jointErr, th.jointErr, cfg.fitEpochs, sh.encErr, th.encErr),
		fmt.Sprintf("Logistic regression: multinomial, on standardized features, Adam (step 3e-3, cosine decay), %d epochs of batches of 100 on the %d training digits, accuracy on the %d test digits; the pixel baseline uses the same %d×%d unit-norm digits the codes are made from.",
			logEpochs, nTrain, nTest, side, side),
		fmt.Sprintf("Side checks on 28×28 digits with pixels in [0, 1]: PCA from the SVD of the covariance of the first %d training digits (%d components for 95%%, %d for 90%%, %d for 99%%). "+
			"k-means: Lloyd's iterations from %d k-means++ starts on the first %d training digits (accuracies %s); the start of lowest inertia is reported. "+
			"Clusters are mapped to labels one-to-one by the Hungarian algorithm.",
			nPCA, pcs, componentsFor(eig, 0.90), componentsFor(eig, 0.99), kmInits, nKMeans, fmtPcts(accs)),
		fmt.Sprintf("Wall time: side checks %.0f s, PSD and classifiers %.0f s.", sideTime.Seconds(), psdTime.Seconds()),
	)
	cum := make([]float64, len(eig))
	idx := make([]float64, len(eig))
	var total, s float64
	for _, v := range eig {
		total += v
	}
	for i, v := range eig {
		s += v
		cum[i], idx[i] = s/total, float64(i+1)
	}
	fig, err := LinePlot{
		Title: "PCA of 28×28 MNIST", XLabel: "components", YLabel: "fraction of variance", LogX: true,
		Series: []Series{{Name: "cumulative variance", X: idx, Y: cum}, {Name: "95%", X: []float64{1, float64(len(eig))}, Y: []float64{0.95, 0.95}}},
	}.Write(env, "pca.png", fmt.Sprintf("cumulative explained variance of MNIST's principal components: %d for 95%%", pcs))
	if err != nil {
		return nil, err
	}
	res.Figures = append(res.Figures, fig)
	return res, nil
}

func fmtPcts(v []float64) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.2f%%", 100*x)
	}
	return s
}
