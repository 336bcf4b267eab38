package repro

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Series is one named curve of a line plot.
type Series struct {
	Name string
	X, Y []float64
	// Points draws a marker at each point as well as the line.
	Points bool
}

// LinePlot describes a plot of curves.
type LinePlot struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool
	Series                []Series
}

// palette is the colours of successive series.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
}

// Color returns the i-th colour of the plots' palette.
func Color(i int) color.RGBA { return palette[i%len(palette)] }

// Write draws the plot as a PNG into env.Dir/file and returns the Figure.
// Points that a log axis cannot show (≤ 0, NaN, ±Inf) are left out.
func (lp LinePlot) Write(env *Env, file, caption string) (Figure, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = lp.Title, lp.XLabel, lp.YLabel
	if lp.LogX {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	if lp.LogY {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	for i, s := range lp.Series {
		var xys plotter.XYs
		for j := range min(len(s.X), len(s.Y)) {
			x, y := s.X[j], s.Y[j]
			if bad(x, lp.LogX) || bad(y, lp.LogY) {
				continue
			}
			xys = append(xys, plotter.XY{X: x, Y: y})
		}
		if len(xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return Figure{}, fmt.Errorf("repro: plot %s: %w", file, err)
		}
		l.Color, l.Width = Color(i), vg.Points(1.5)
		if s.Points {
			pts.Color, pts.Shape = Color(i), draw.CircleGlyph{}
			p.Add(l, pts)
			p.Legend.Add(s.Name, l, pts)
		} else {
			p.Add(l)
			p.Legend.Add(s.Name, l)
		}
	}
	p.Legend.Top = true
	return save(env, p, file, caption, 7*vg.Inch, 4.5*vg.Inch)
}

func bad(v float64, log bool) bool {
	return math.IsNaN(v) || math.IsInf(v, 0) || (log && v <= 0)
}

// Histograms draws one histogram per named sample set, overlaid, with
// bins bins over their common range, into env.Dir/file.
func Histograms(env *Env, file, caption, title, xlabel string, names []string, samples [][]float64, bins int) (Figure, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xlabel, "runs"
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range samples {
		for _, v := range s {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if !(hi > lo) {
		hi = lo + 1
	}
	width := (hi - lo) / float64(bins)
	for i, s := range samples {
		if len(s) == 0 {
			continue
		}
		counts := make([]float64, bins)
		for _, v := range s {
			counts[min(int((v-lo)/width), bins-1)]++
		}
		var xys plotter.XYs
		for b, c := range counts {
			// A step outline: flat over each bin.
			xys = append(xys, plotter.XY{X: lo + float64(b)*width, Y: c}, plotter.XY{X: lo + float64(b+1)*width, Y: c})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return Figure{}, fmt.Errorf("repro: plot %s: %w", file, err)
		}
		l.Color, l.Width = Color(i), vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(names[i], l)
	}
	p.Legend.Top = true
	return save(env, p, file, caption, 7*vg.Inch, 4.5*vg.Inch)
}

func save(env *Env, p *plot.Plot, file, caption string, w, h vg.Length) (Figure, error) {
	if err := p.Save(w, h, filepath.Join(env.Dir, file)); err != nil {
		return Figure{}, fmt.Errorf("repro: plot %s: %w", file, err)
	}
	return Figure{File: file, Caption: caption}, nil
}
