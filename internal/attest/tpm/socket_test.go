package tpm

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A command sent while nothing accepts on the socket (swtpm between two connections)
// is retried until the emulator listens again, instead of failing at once.
func TestSocketRetriesRefusedDial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpm.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the socket file stays; dials are refused

	tc, err := OpenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	rwc := &socketRWC{path: path}
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("dial succeeded with no listener; the test cannot show the retry")
	}

	served := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		l, err := net.Listen("unix", path+".new")
		if err != nil {
			served <- err
			return
		}
		defer l.Close()
		if err := os.Rename(path+".new", path); err != nil {
			served <- err
			return
		}
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte("pong"))
		c.Close()
		l.Close() // before reporting: the last part of the test needs nobody listening
		served <- err
	}()

	if _, err := rwc.Write([]byte("ping")); err != nil {
		t.Fatalf("Write: %v (the refused dial was not retried)", err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(rwc, got); err != nil || string(got) != "pong" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}

	// Nobody listening for longer than the retry budget: the dial error comes back.
	start := time.Now()
	if _, err := (&socketRWC{path: path}).Write([]byte("ping")); err == nil {
		t.Fatal("Write succeeded with nothing listening")
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("gave up after %s, want the one-second retry budget", d)
	}
}
