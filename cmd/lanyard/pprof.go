//go:build pprof

package main

// Built with -tags pprof, lanyard serves net/http/pprof on LANYARD_PPROF_ADDR (a
// loopback address such as 127.0.0.1:6060) for profiling. Release builds leave it out.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("LANYARD_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
