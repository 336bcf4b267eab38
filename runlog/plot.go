package runlog

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot draws the loss and accuracy curves of the records (training
// windows as lines, test evaluations as points) into curves.png.
func WritePlot(dir, title string, records []Record) error {
	var trainLoss, trainAcc, evalLoss, evalAcc plotter.XYs
	for _, r := range records {
		r.Loss = max(r.Loss, 1e-6) // the loss axis is logarithmic
		switch r.Kind {
		case "train":
			trainLoss = append(trainLoss, plotter.XY{X: r.Progress, Y: r.Loss})
			trainAcc = append(trainAcc, plotter.XY{X: r.Progress, Y: 100 * r.Accuracy})
		case "eval":
			evalLoss = append(evalLoss, plotter.XY{X: r.Progress, Y: r.Loss})
			evalAcc = append(evalAcc, plotter.XY{X: r.Progress, Y: 100 * r.Accuracy})
		}
	}
	loss := plot.New()
	loss.Title.Text = title + ": loss"
	loss.X.Label.Text = "epoch"
	loss.Y.Label.Text = "cross-entropy (log scale)"
	loss.Y.Scale = plot.LogScale{}
	loss.Y.Tick.Marker = plot.LogTicks{Prec: -1}

	acc := plot.New()
	acc.Title.Text = title + ": accuracy"
	acc.X.Label.Text = "epoch"
	acc.Y.Label.Text = "%"
	blue := color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange := color.RGBA{R: 255, G: 127, B: 14, A: 255}
	for _, c := range []struct {
		p           *plot.Plot
		train, test plotter.XYs
		trainLegend string
		evalLegend  string
	}{
		{loss, trainLoss, evalLoss, "train", "test"},
		{acc, trainAcc, evalAcc, "train", "test"},
	} {
		if len(c.train) > 0 {
			l, err := plotter.NewLine(c.train)
			if err != nil {
				return fmt.Errorf("runlog: plot: %w", err)
			}
			l.Color = blue
			c.p.Add(l)
			c.p.Legend.Add(c.trainLegend, l)
		}
		if len(c.test) > 0 {
			l, s, err := plotter.NewLinePoints(c.test)
			if err != nil {
				return fmt.Errorf("runlog: plot: %w", err)
			}
			l.Color, s.Color = orange, orange
			s.Shape = draw.CircleGlyph{}
			c.p.Add(l, s)
			c.p.Legend.Add(c.evalLegend, l, s)
		}
		c.p.Add(plotter.NewGrid())
	}
	// The log axis needs a positive range: a run stopped before its first
	// record, or with one loss value, would leave gonum's default (-1, 1)
	// or a range padded below zero.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, xy := range append(trainLoss[:len(trainLoss):len(trainLoss)], evalLoss...) {
		lo, hi = min(lo, xy.Y), max(hi, xy.Y)
	}
	switch {
	case lo > hi:
		lo, hi = 0.01, 10
	case lo == hi:
		lo, hi = lo/10, hi*10
	}
	loss.Y.Min, loss.Y.Max = lo, hi
	acc.Legend.Left, acc.Legend.Top = false, false
	loss.Legend.Top = true

	const w, h = 10 * vg.Inch, 4 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{{loss, acc}}, tiles, dc)
	loss.Draw(canvases[0][0])
	acc.Draw(canvases[0][1])
	var png bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&png); err != nil {
		return fmt.Errorf("runlog: plot: %w", err)
	}
	return WriteFile(dir, PlotFile, png.Bytes())
}
