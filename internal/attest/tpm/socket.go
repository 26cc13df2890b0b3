package tpm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// OpenSocket connects to a TPM emulator such as swtpm on a Unix socket. Like go-tpm's
// linuxudstpm it dials one connection per command, because swtpm serves one connection
// at a time; unlike it, a dial refused while swtpm has not yet gone back to accept()
// after the previous command (its listen backlog is tiny, and on a busy machine the
// next command can arrive first) is retried for up to a second instead of failing the
// whole enrolment or attestation.
func OpenSocket(path string) (transport.TPMCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("tpm: %s is not a socket", path)
	}
	return transport.FromReadWriteCloser(&socketRWC{path: path}), nil
}

type socketRWC struct {
	path string
	conn net.Conn
}

func (s *socketRWC) Write(p []byte) (int, error) {
	if s.conn != nil {
		return 0, errors.New("tpm: socket: a command is already in flight")
	}
	delay := time.Millisecond
	deadline := time.Now().Add(time.Second)
	for {
		conn, err := net.Dial("unix", s.path)
		if err == nil {
			s.conn = conn
			return conn.Write(p)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return 0, err
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

func (s *socketRWC) Read(p []byte) (int, error) {
	if s.conn == nil {
		return 0, errors.New("tpm: socket: read before write")
	}
	n, err := s.conn.Read(p)
	s.conn.Close()
	s.conn = nil
	return n, err
}

func (s *socketRWC) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
