package web

import (
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"

	assets "github.com/lanyardhq/lanyard/web"
)

// partials are parsed into every page.
var partials = []string{"layout.html", "secret.html"}

var pages = []string{"error", "login", "dashboard", "agents", "agent", "register", "registered", "rotated", "confirm", "audit", "settings", "federation_error"}

var funcs = template.FuncMap{
	"join":     strings.Join,
	"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"day":      func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"whenp":    func(t *time.Time) string { return optTime(t, "2006-01-02 15:04:05") },
	"rfc3339p": func(t *time.Time) string { return optTime(t, time.RFC3339) },
	"secs":     func(s int64) string { return (time.Duration(s) * time.Second).String() },
	"add":      func(a, b int) int { return a + b },
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"pretty": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	},
	// list prints a JSON list (or a single value) from an audit event's data.
	"list": func(v any) string {
		switch x := v.(type) {
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			return strings.Join(parts, " ")
		case nil:
			return ""
		}
		return fmt.Sprint(v)
	},
}

func optTime(t *time.Time, layout string) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(layout)
}

func parseTemplates() (map[string]*template.Template, error) {
	fsys := assets.Templates()
	base, err := template.New("").Funcs(funcs).ParseFS(fsys, partials...)
	if err != nil {
		return nil, fmt.Errorf("web: parse templates: %w", err)
	}
	out := make(map[string]*template.Template, len(pages))
	for _, p := range pages {
		t, err := template.Must(base.Clone()).ParseFS(fsys, p+".html")
		if err != nil {
			return nil, fmt.Errorf("web: parse template %s: %w", p, err)
		}
		out[p] = t
	}
	return out, nil
}
