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
		Paper: "Kavukcuoglu, Ranzato, LeCun 2008 (Fast inference in sparse coding algorithms with applications to object recognition: PSD); side checks on MNIST: PCA's 95% variance (154 components), k-means clustering accuracy",
		Run:   runPSD,
	})
}

// psdEncoder predicts codes: F(x) = g ⊙ tanh(W·x + b), W (N, M), b and g
// (N), in one flat arena.
type psdEncoder struct {
	n, m         int
	params, grad []float32
	w, b, g      *tensorcore.Tensor
	gw, gb, gg   *tensorcore.Tensor
}

func newPSDEncoder(d *Dict) *psdEncoder {
	n, m := d.N, d.M
	e := &psdEncoder{n: n, m: m, params: make([]float32, n*m+2*n), grad: make([]float32, n*m+2*n)}
	e.w, e.b, e.g = tensorcore.FromSlice(e.params[:n*m], n, m), tensorcore.FromSlice(e.params[n*m:n*m+n], n), tensorcore.FromSlice(e.params[n*m+n:], n)
	e.gw, e.gb, e.gg = tensorcore.FromSlice(e.grad[:n*m], n, m), tensorcore.FromSlice(e.grad[n*m:n*m+n], n), tensorcore.FromSlice(e.grad[n*m+n:], n)
	// Start from the atoms as filters, a small gain.
	copy(e.w.Data, d.Atoms)
	for i := range e.g.Data {
		e.g.Data[i] = 0.1
	}
	return e
}

func (e *psdEncoder) forward(tp *tensorcore.Tape, x *tensorcore.Var) *tensorcore.Var {
	w, b, g := tp.Param(e.w, e.gw), tp.Param(e.b, e.gb), tp.Param(e.g, e.gg)
	return tp.Mul(tp.Tanh(tp.Linear(x, w, b)), g)
}

// encode writes the encoder's codes of the rows of x into z.
func (e *psdEncoder) encode(z, x []float32, rows int) { forwardRows(e.forward, z, x, rows, e.m, e.n) }

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
	mean := make([]float64, d)
	for i := range rows {
		for j := range d {
			mean[j] += float64(x[i*d+j])
		}
	}
	xc := make([]float32, len(x))
	for i := range rows {
		for j := range d {
			xc[i*d+j] = float32(float64(x[i*d+j]) - mean[j]/float64(rows))
		}
	}
	cov32 := make([]float32, d*d)
	tensorcore.Sgemm(nil, true, false, d, d, rows, 1, xc, d, xc, d, 0, cov32, d)
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
	const side, atoms, nnz, alpha = 12, 196, 0.10, 1.0
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
	yTrain = yTrain[:nTrain]
	m := side * side
	d, lambda, err := learnDict(ctx, rng, xTrain, dictRows, m, atoms, dictEpochs, 100, 50, nnz, 0.5, tuneRows, tuneIters,
		func(f float64) { env.progress(0.15 + 0.15*f) })
	if err != nil {
		return nil, err
	}
	enc := newPSDEncoder(d)
	if err := trainPSD(ctx, d, enc, xTrain, dictRows, rng, lambda, alpha, psdEpochs, 100, 20, 0.5, 1e-3,
		func(f float64) { env.progress(0.3 + 0.3*f) }); err != nil {
		return nil, err
	}
	lambda = d.tuneLambda(xTrain, min(dictRows, tuneRows), nnz, tuneIters) // for the final atoms
	env.Logf("psd: dictionary and encoder trained in %s, λ = %.4f", time.Since(t1).Round(time.Second), lambda)
	zTrain, zTest := make([]float32, nTrain*atoms), make([]float32, nTest*atoms)
	d.FISTA(zTrain, xTrain[:nTrain*m], nTrain, lambda, starIters, nil)
	d.FISTA(zTest, xTest, nTest, lambda, starIters, nil)
	env.progress(0.7)
	fTest := make([]float32, nTest*atoms)
	enc.encode(fTest, xTest, nTest)
	jointErr := relCodeError(fTest, zTest, nTest, atoms)
	// The encoder regressed onto the optimal codes of the final atoms: the
	// limit of PSD's prediction term.
	if err := fitEncoder(ctx, enc, xTrain, zTrain, nTrain, rng, fitEpochs, 100, 1e-3); err != nil {
		return nil, err
	}
	enc.encode(fTest, xTest, nTest)
	encErr := relCodeError(fTest, zTest, nTest, atoms)
	fTrain := make([]float32, nTrain*atoms)
	enc.encode(fTrain, xTrain[:nTrain*m], nTrain)
	env.Logf("psd: encoder code error %.4f after joint training, %.4f after fitting", jointErr, encErr)
	env.progress(0.8)

	accRaw, err := logisticAccuracy(ctx, rng, xTrain[:nTrain*m], yTrain, xTest, yTest, m, logEpochs, 3e-3)
	if err != nil {
		return nil, err
	}
	accExact, err := logisticAccuracy(ctx, rng, zTrain, yTrain, zTest, yTest, atoms, logEpochs, 3e-3)
	if err != nil {
		return nil, err
	}
	accEnc, err := logisticAccuracy(ctx, rng, fTrain, yTrain, fTest, yTest, atoms, logEpochs, 3e-3)
	if err != nil {
		return nil, err
	}
	// A second encoder form, the shrinkage encoder h_θ(W x) (a one-layer
	// LISTA), fitted to the same codes: it can output exact zeros, which
	// g ⊙ tanh(·) cannot.
	shrinkEnc := newLISTA(d, lambda, 1)
	trainSet2 := codeSet{rows: nTrain, x: xTrain[:nTrain*m], zStar: zTrain}
	if err := trainLISTA(ctx, shrinkEnc, trainSet2, rng, 2*fitEpochs, 100, 3e-3, nil); err != nil {
		return nil, err
	}
	shrinkErr := evalLISTA(shrinkEnc, codeSet{rows: nTest, x: xTest, zStar: zTest})
	sTrain, sTest := shrinkCodes(shrinkEnc, xTrain[:nTrain*m], nTrain), shrinkCodes(shrinkEnc, xTest, nTest)
	accShrink, err := logisticAccuracy(ctx, rng, sTrain, yTrain, sTest, yTest, atoms, logEpochs, 3e-3)
	if err != nil {
		return nil, err
	}
	psdTime := time.Since(t1)
	env.Logf("psd: shrinkage encoder code error %.4f", shrinkErr)
	env.Logf("psd: logistic regression accuracy: pixels %.4f, FISTA codes %.4f, encoder codes %.4f, shrinkage encoder codes %.4f", accRaw, accExact, accEnc, accShrink)

	pct := func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }
	res.Claims = []Claim{
		{What: "encoder code error ‖F(x) − z*‖²/‖z*‖² on the test digits", Paper: "the encoder predicts the optimal codes closely",
			Target: "≤ 0.30", Ours: fmt.Sprintf("%.4f", encErr), Pass: encErr <= 0.3},
		{What: "logistic regression test accuracy, encoder codes against FISTA codes", Paper: "predicted codes classify about as well as optimal codes",
			Target: "within 1.0 point of FISTA codes (" + pct(accExact) + ")", Ours: pct(accEnc), Pass: math.Abs(accEnc-accExact) <= 0.01},
		{What: "logistic regression test accuracy, codes against raw pixels", Paper: "sparse codes beat raw pixels for a linear classifier",
			Target: "both codes > pixels (" + pct(accRaw) + ")", Ours: fmt.Sprintf("encoder %s, FISTA %s", pct(accEnc), pct(accExact)), Pass: accEnc > accRaw && accExact > accRaw},
		{What: "variant: shrinkage encoder h_θ(W x) fitted to the same codes: code error; logistic regression accuracy on its codes", Paper: "(not in the 2008 paper: its encoder is g ⊙ tanh)",
			Target: "≤ 0.30; within 1.0 point of FISTA codes", Ours: fmt.Sprintf("%.4f; %s", shrinkErr, pct(accShrink)), Pass: shrinkErr <= 0.3 && math.Abs(accShrink-accExact) <= 0.01, Stretch: true},
		{What: "PCA of 28×28 MNIST training digits: components for 95% of the variance", Paper: "about 154",
			Target: "149–159", Ours: fmt.Sprintf("%d", pcs), Pass: pcs >= 149 && pcs <= 159},
		{What: "k-means (k = 10, k-means++) clustering accuracy on 28×28 MNIST training digits, best one-to-one label map", Paper: "about 50–58%",
			Target: "50–58%", Ours: pct(bestAcc), Pass: bestAcc >= 0.50 && bestAcc <= 0.58},
	}
	res.Notes = append(res.Notes,
		fmt.Sprintf("PSD setup: MNIST digits area-downsampled to %d×%d (%d-D) and scaled to unit norm; %d atoms. A dictionary is first learned by plain sparse coding (%d epochs on %d digits, FISTA codes and a gradient step on the atoms, λ re-tuned by bisection for %.0f%% non-zeros), "+
			"then PSD trains it jointly with the encoder F(x) = g ⊙ tanh(W x + b) for %d epochs: each batch's codes minimize ½‖x − Dz‖² + λ‖z‖₁ + (α/2)‖z − F(x)‖² (α = %.0f, 20 FISTA iterations from F(x)), "+
			"the atoms take a gradient step and are rescaled to unit norm, the encoder an Adam step towards the codes. λ = %.4f (re-tuned for the final atoms).",
			side, side, m, atoms, dictEpochs, dictRows, 100*nnz, psdEpochs, alpha, lambda),
		fmt.Sprintf("Optimal codes z*: FISTA, %d iterations, from zero, on the first %d training and %d test digits (%.1f%% non-zeros on test). "+
			"The encoder's code error is %.4f after the joint training; it was then regressed onto z* of the training digits for %d more epochs (the prediction term alone, the codes held at z*), giving %.4f, the figure claimed. "+
			"Longer fitting does not help: this encoder form plateaus near this error on these codes (in a side trial, not part of this run, with a dictionary learned on 10,000 digits, fitting for four rounds of 10 epochs at steps 3e-3 and at 1e-2 stayed at 0.59–0.60). "+
			"As a variant, a shrinkage encoder h_θ(W x) (one LISTA layer, W and θ started from ISTA's values) was fitted to the same z* for %d epochs (Adam, step 3e-3): code error %.4f.",
			starIters, nTrain, nTest, 100*nonZeroFraction(zTest), jointErr, fitEpochs, encErr, 2*fitEpochs, shrinkErr),
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

// shrinkCodes returns the codes a one-layer LISTA gives the rows of x.
func shrinkCodes(l *listaNet, x []float32, rows int) []float32 {
	z := make([]float32, rows*l.n)
	forwardRows(l.forward, z, x, rows, l.m, l.n)
	return z
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
