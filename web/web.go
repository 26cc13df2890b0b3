// Package web holds the web UI's embedded assets: the html/template pages in
// templates/ and the static files in static/ (the stylesheet, the UI's own small
// script, and htmx, vendored from the npm registry; see static/README.md). The
// handlers are in internal/web.
package web

import (
	"embed"
	"io/fs"
)

//go:embed templates/*.html static
var files embed.FS

// Templates returns the page templates, at the root of the returned FS.
func Templates() fs.FS { return sub("templates") }

// Static returns the static files, at the root of the returned FS.
func Static() fs.FS { return sub("static") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // dir is a constant above
	}
	return f
}
