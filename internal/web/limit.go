package web

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failureLimiter slows guessing at the break-glass sign-in: each client address may
// fail failureBurst times at once, then once per failureEvery. Successful sign-ins cost
// nothing. Addresses come from the TCP connection, not from X-Forwarded-For, which a
// client can forge.
type failureLimiter struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

const (
	failureBurst = 10
	failureEvery = 30 * time.Second
	// failureAddrs bounds the memory: past it the table starts over.
	failureAddrs = 10000
)

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (l *failureLimiter) limiter(addr string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) >= failureAddrs {
		l.m = map[string]*rate.Limiter{}
	}
	lim, ok := l.m[addr]
	if !ok {
		lim = rate.NewLimiter(rate.Every(failureEvery), failureBurst)
		l.m[addr] = lim
	}
	return lim
}

// blocked reports whether addr has used up its failures for now.
func (l *failureLimiter) blocked(addr string) bool { return l.limiter(addr).Tokens() < 1 }

// failed records a failed attempt from addr.
func (l *failureLimiter) failed(addr string) { l.limiter(addr).Allow() }
