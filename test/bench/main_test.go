package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestRequireLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://127.1.2.3", "http://localhost:1", "http://[::1]:9"} {
		if err := requireLoopback(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1", "http://192.168.1.1:8080", "http://example.com", "http://0.0.0.0:8080", "ftp://127.0.0.1"} {
		if err := requireLoopback(u); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Setenv("LANYARD_ADMIN_TOKEN", "")
	o := options{concurrency: 64, duration: 3 * time.Minute, warmup: time.Second, rate: 1, url: "http://10.1.1.1"}
	err := o.validate()
	for _, want := range []string{"at most 3m0s", "not a loopback", "-admin-token"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate: %v, want %q", err, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if percentile(d, 0.5) != 50*time.Millisecond || percentile(d, 0.99) != 99*time.Millisecond || percentile(nil, 0.5) != 0 {
		t.Errorf("p50 %v p99 %v", percentile(d, 0.5), percentile(d, 0.99))
	}
}

func TestProcFigures(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	if s := procCPUSeconds(os.Getpid()); s < 0 {
		t.Errorf("procCPUSeconds(self) = %v", s)
	}
	if rss, peak := procRSSMiB(os.Getpid()); rss <= 0 || peak < rss {
		t.Errorf("rss %v peak %v", rss, peak)
	}
}

// TestPresignAndDrive runs the generator's measured loop against a fake token endpoint
// that checks every assertion is valid and used once.
func TestPresignAndDrive(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := &jose.JSONWebKey{Key: priv, KeyID: "k1", Algorithm: "ES256"}
	bodies, err := presign(context.Background(), key, []string{"agt_1"}, "http://issuer", "bench:read", 400)
	if err != nil {
		t.Fatal(err)
	}
	var seen = make(map[string]bool)
	var dup, bad atomic.Int64
	seenCh := make(chan string, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f, _ := url.ParseQuery(string(b))
		tok, err := jwt.ParseSigned(f.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		var c jwt.Claims
		if err != nil || tok.Claims(&priv.PublicKey, &c) != nil || f.Get("scope") != "bench:read" ||
			c.Expiry.Time().Sub(c.IssuedAt.Time()) != assertionLifetime {
			bad.Add(1)
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		seenCh <- c.ID
		io.WriteString(w, `{"access_token":"x","token_type":"Bearer"}`)
	}))
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		for id := range seenCh {
			if seen[id] {
				dup.Add(1)
			}
			seen[id] = true
		}
		close(done)
	}()
	o := options{concurrency: 8, duration: 10 * time.Second, warmup: 0}
	res := drive(context.Background(), target{url: srv.URL, contentType: "application/x-www-form-urlencoded", okStatus: http.StatusOK}, bodies, o, os.Getpid())
	close(seenCh)
	<-done
	if !res.Exhausted || res.OK == 0 || res.OK > 400 || res.Errors != 0 || bad.Load() != 0 || dup.Load() != 0 {
		t.Errorf("result %+v, bad %d, dup %d", res, bad.Load(), dup.Load())
	}
	if res.MeasuredSeconds >= 10 || res.TokensPerSecond <= 0 || res.P99ms <= 0 {
		t.Errorf("window %v, rate %v, p99 %v", res.MeasuredSeconds, res.TokensPerSecond, res.P99ms)
	}
}
