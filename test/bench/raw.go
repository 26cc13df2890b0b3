package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// target is what the generator loads: where bodies go, how they are encoded, and what
// a success looks like.
type target struct {
	url         string
	contentType string
	okStatus    int
	// okMarker, when set, must appear in a successful answer's body.
	okMarker []byte
	// header is extra request header lines, each ending in CRLF (e.g. the
	// Authorization header of client_secret_basic, the same on every request).
	header string
}

// rawClient is one keep-alive HTTP/1.1 connection that posts pre-built bodies to
// the token endpoint (or, with -mode attest, the attestation endpoint). It exists because net/http's client costs about as much CPU per
// request as the server's token issuance itself; on a 2-core machine shared with the
// server, that would measure the generator, not Lanyard. Requests are built once per
// body (a fixed header block plus the body) and responses are parsed with
// http.ReadResponse, so the protocol handling stays the standard library's.
type rawClient struct {
	addr    string
	header  []byte // request line and headers up to Content-Length's value
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
	buf     []byte
	t       target
	// full makes post return the whole answer body, whatever the status (for the
	// one checked request before a run).
	full bool
}

func newRawClient(t target, timeout time.Duration) *rawClient {
	u, err := url.Parse(t.url)
	if err != nil {
		panic(err) // validated (and required to be loopback) before the run
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	hdr := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nAccept: application/json\r\n%sContent-Length: ",
		u.RequestURI(), u.Host, t.contentType, t.header)
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &rawClient{addr: host, header: []byte(hdr), timeout: timeout, t: t}
}

// post sends body and returns the status code, and the start of the body when the
// answer is not a success (the target's status, and its marker in the body when it
// names one). A broken connection is redialled on the next call.
func (c *rawClient) post(body []byte) (int, []byte, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, nil, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 8<<10)
	}
	c.buf = append(c.buf[:0], c.header...)
	c.buf = strconv.AppendInt(c.buf, int64(len(body)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, body...)
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.conn.Write(c.buf); err != nil {
		c.close()
		return 0, nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, nil, err
	}
	var errBody []byte
	status := resp.StatusCode
	switch {
	case c.full:
		errBody, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	case status != c.t.okStatus:
		errBody, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
	case c.t.okMarker != nil:
		// Read the whole answer: a 201 with a contraindicated verdict is not a success.
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if rerr == nil && !bytes.Contains(b, c.t.okMarker) {
			status, errBody = 0, b[:min(len(b), 512)]
		}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return status, errBody, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
