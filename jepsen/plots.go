package jepsen

import (
	"errors"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Colours of the plots: one per outcome, and the fault windows.
var (
	colorOK      = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorFail    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colorUnknown = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colorFault   = color.NRGBA{R: 0xf4, G: 0x9c, B: 0x9c, A: 0x70}
)

// series are the plots' series, one per outcome, in legend order.
var series = []struct {
	st Status
	c  color.Color
}{{StatusOK, colorOK}, {StatusFail, colorFail}, {StatusUnknown, colorUnknown}}

// plots writes latency.png (each operation's latency against its
// invocation time, by outcome; an unknown one until the client gave up)
// and rate.png (operations per second by outcome) to dir, with the fault
// windows shaded. end is the end of the history in nanoseconds.
func plots(dir string, ops []Op, faults []FaultWindow, end int64) error {
	return errors.Join(latencyPlot(filepath.Join(dir, "latency.png"), ops, faults),
		ratePlot(filepath.Join(dir, "rate.png"), ops, faults, end))
}

// newPlot is a plot of something against the time since the start.
func newPlot(title, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title + " (fault windows shaded)"
	p.X.Label.Text = "time since start (s)"
	p.Y.Label.Text = yLabel
	return p
}

// savePlot writes p, its legend at the top, to path.
func savePlot(p *plot.Plot, path string) error {
	p.Legend.Top = true
	return p.Save(10*vg.Inch, 4*vg.Inch, path)
}

func latencyPlot(path string, ops []Op, faults []FaultWindow) error {
	p := newPlot("latency", "latency (ms)")
	pts := map[Status]plotter.XYs{}
	maxY := 1.0
	for _, op := range ops {
		if op.Process < 0 {
			continue // final reads
		}
		y := float64(op.Ended-op.Invoke) / 1e6
		pts[op.Status] = append(pts[op.Status], plotter.XY{X: float64(op.Invoke) / 1e9, Y: y})
		maxY = max(maxY, y)
	}
	if err := shade(p, faults, maxY); err != nil {
		return err
	}
	for _, s := range series {
		if len(pts[s.st]) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(pts[s.st])
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = s.c
		sc.GlyphStyle.Radius = vg.Points(1)
		sc.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(sc)
		p.Legend.Add(string(s.st), sc)
	}
	return savePlot(p, path)
}

func ratePlot(path string, ops []Op, faults []FaultWindow, end int64) error {
	p := newPlot("throughput", "operations completed per second")
	secs := int(end/1e9) + 1
	counts := map[Status][]float64{}
	for _, s := range series {
		counts[s.st] = make([]float64, secs)
	}
	maxY := 1.0
	for _, op := range ops {
		if op.Process < 0 {
			continue
		}
		s := int(op.Ended / 1e9)
		if s < 0 || s >= secs {
			continue
		}
		counts[op.Status][s]++
		maxY = max(maxY, counts[op.Status][s])
	}
	if err := shade(p, faults, maxY); err != nil {
		return err
	}
	for _, s := range series {
		xys := make(plotter.XYs, secs)
		for i, n := range counts[s.st] {
			xys[i] = plotter.XY{X: float64(i) + 0.5, Y: n}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.LineStyle.Color = s.c
		l.LineStyle.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(string(s.st), l)
	}
	return savePlot(p, path)
}

// shade adds a rectangle from 0 to maxY over each fault window.
func shade(p *plot.Plot, faults []FaultWindow, maxY float64) error {
	for _, f := range faults {
		if f.End <= f.Start {
			continue
		}
		s, e := float64(f.Start)/1e9, float64(f.End)/1e9
		poly, err := plotter.NewPolygon(plotter.XYs{{X: s, Y: 0}, {X: e, Y: 0}, {X: e, Y: maxY}, {X: s, Y: maxY}})
		if err != nil {
			return err
		}
		poly.Color = colorFault
		poly.LineStyle.Width = 0
		p.Add(poly)
	}
	return nil
}
