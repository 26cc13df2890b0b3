package vaulttest

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// Proxy forwards TCP connections to a Vault server and can be taken down and brought
// back on the same address, so a test can make Vault unreachable (connection refused,
// established connections cut) and reachable again without losing the in-memory dev
// server's data.
type Proxy struct {
	// Addr is the proxy's URL; point clients at it instead of the server.
	Addr string

	target   string
	hostPort string
	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
}

// NewProxy starts a proxy in front of the server at targetURL (http://host:port).
func NewProxy(targetURL string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		target:   strings.TrimPrefix(targetURL, "http://"),
		hostPort: ln.Addr().String(),
		conns:    map[net.Conn]struct{}{},
	}
	p.Addr = "http://" + p.hostPort
	p.serve(ln)
	return p, nil
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *Proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // went down meanwhile
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Down stops accepting connections (clients get "connection refused") and cuts every
// open one.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Up listens again on the same address.
func (p *Proxy) Up() error {
	p.mu.Lock()
	up := p.ln != nil
	p.mu.Unlock()
	if up {
		return nil
	}
	ln, err := net.Listen("tcp", p.hostPort)
	if err != nil {
		return fmt.Errorf("vaulttest: proxy up: %w", err)
	}
	p.serve(ln)
	return nil
}

// Close takes the proxy down for good.
func (p *Proxy) Close() { p.Down() }
