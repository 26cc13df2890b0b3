package web

import (
	"fmt"
	"net/url"
)

// The dashboard's plots are SVG computed here and drawn by the templates: geometry
// only, every label goes through html/template's escaping.

// barChart is a horizontal bar chart of counts.
type barChart struct {
	Title  string
	Bars   []bar
	Height int
	Empty  bool
}

type bar struct {
	Label string
	Value int64
	Link  string
	Y     int // top of the row
	W     int // bar width
	TextY int
}

const (
	barRow   = 26
	barMaxW  = 230
	barLeft  = 130
	colChart = 60
)

func newBarChart(title string, items []kv, link string) barChart {
	c := barChart{Title: title, Height: len(items)*barRow + 8, Empty: true}
	var maxV int64
	for _, it := range items {
		maxV = max(maxV, it.Value)
	}
	for i, it := range items {
		w := 0
		if maxV > 0 {
			w = int(it.Value * barMaxW / maxV)
		}
		if it.Value > 0 {
			w = max(w, 2)
			c.Empty = false
		}
		c.Bars = append(c.Bars, bar{Label: it.Key, Value: it.Value, Link: link + url.QueryEscape(it.Key), Y: i*barRow + 4, W: w, TextY: i*barRow + 21})
	}
	return c
}

// columnChart is a two-series column chart over time (tokens issued and refused).
type columnChart struct {
	Title   string
	Columns []column
	Ticks   []tick
	Max     int64
	Summary string
}

type column struct {
	Label               string
	Issued, Refused     int64
	X, IssuedY, IssuedH int
	RefusedX            int
	RefusedY, RefusedH  int
	LabelX              int
	ShowLabel           bool
}

type tick struct {
	Y     int
	Label string
}

const (
	colLeft   = 44
	colTop    = 10
	colHeight = 150
	colWidth  = 38
)

func newColumnChart(title string, labels []string, issued, refused []int64) columnChart {
	c := columnChart{Title: title}
	for i := range labels {
		c.Max = max(c.Max, issued[i], refused[i])
	}
	scale := niceMax(c.Max)
	h := func(v int64) int { return int(v * colHeight / scale) }
	var ti, tr int64
	for i, l := range labels {
		x := colLeft + i*colWidth
		ih, rh := h(issued[i]), h(refused[i])
		if issued[i] > 0 {
			ih = max(ih, 1)
		}
		if refused[i] > 0 {
			rh = max(rh, 1)
		}
		c.Columns = append(c.Columns, column{Label: l, Issued: issued[i], Refused: refused[i],
			X: x + 4, IssuedY: colTop + colHeight - ih, IssuedH: ih,
			RefusedX: x + 19, RefusedY: colTop + colHeight - rh, RefusedH: rh,
			LabelX: x + 19, ShowLabel: i%2 == 0})
		ti += issued[i]
		tr += refused[i]
	}
	for _, f := range []int64{0, 1, 2} {
		v := scale * f / 2
		c.Ticks = append(c.Ticks, tick{Y: colTop + colHeight - h(v), Label: fmt.Sprint(v)})
	}
	c.Summary = fmt.Sprintf("%s: %d issued, %d refused", title, ti, tr)
	return c
}

// niceMax rounds v up to 1, 2 or 5 × a power of ten (at least 2, so ticks are whole).
func niceMax(v int64) int64 {
	if v < 2 {
		return 2
	}
	p := int64(1)
	for p*10 < v {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
