package attest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/attest/tpm"
	"github.com/lanyardhq/lanyard/internal/attest/tpm/swtpmtest"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// events records audit events (the audit log itself is tested in package audit).
type events struct {
	mu   sync.Mutex
	list []audit.Event
}

func (r *events) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, e)
	return nil
}

func (r *events) last() audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.list[len(r.list)-1]
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newAttester(t *testing.T, sw *swtpmtest.TPM, ek string) *tpm.Attester {
	t.Helper()
	conn := sw.Open(t)
	t.Cleanup(func() { conn.Close() })
	at, err := tpm.NewAttester(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { at.Close() })
	if err := at.UseEK(ek); err != nil {
		t.Fatal(err)
	}
	return at
}

func request(t *testing.T, at *tpm.Attester, cert bool) attest.EnrolRequest {
	t.Helper()
	ek, err := at.EKPublic()
	if err != nil {
		t.Fatal(err)
	}
	req := attest.EnrolRequest{EKPublic: ek, AKPublic: at.AKPublic()}
	if cert {
		if req.EKCertificate, err = at.EKCertificate(); err != nil || len(req.EKCertificate) == 0 {
			t.Fatalf("EK certificate: %d bytes, %v", len(req.EKCertificate), err)
		}
	}
	return req
}

func wantKind(t *testing.T, err error, kind string) {
	t.Helper()
	var ee *attest.EnrolmentError
	if !errors.As(err, &ee) || ee.Kind != kind {
		t.Fatalf("error = %v, want an EnrolmentError of kind %s", err, kind)
	}
}

func TestEnrolmentLifecycle(t *testing.T) {
	ctx := context.Background()
	sw := swtpmtest.Start(t, swtpmtest.Options{})
	at := newAttester(t, sw, tpm.EKECC)
	st := storetest.OpenSQLite(t)
	aud := &events{}
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	svc := attest.NewEnrolments(st, aud, attest.EnrolmentOptions{TTL: time.Minute, Now: clk.now})

	activate := func(ch *attest.EnrolChallenge) []byte {
		s, err := at.ActivateCredential(ch.CredentialBlob, ch.EncryptedSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("expired", func(t *testing.T) {
		ch, err := svc.Start(ctx, "caller-a", "admin", request(t, at, false))
		if err != nil {
			t.Fatal(err)
		}
		secret := activate(ch)
		clk.t = clk.t.Add(time.Minute)
		_, err = svc.Finish(ctx, "caller-a", "admin", ch.ID, secret)
		wantKind(t, err, attest.EnrolExpired)
		if e := aud.last(); e.Type != "tpm.enrolled" || e.Outcome != "failure" {
			t.Fatalf("audit = %+v", e)
		}
	})
	t.Run("another caller", func(t *testing.T) {
		ch, err := svc.Start(ctx, "caller-a", "admin", request(t, at, false))
		if err != nil {
			t.Fatal(err)
		}
		secret := activate(ch)
		_, err = svc.Finish(ctx, "caller-b", "admin", ch.ID, secret)
		wantKind(t, err, attest.EnrolNotFound)
		// The attempt used the enrolment up: the rightful caller starts again.
		_, err = svc.Finish(ctx, "caller-a", "admin", ch.ID, secret)
		wantKind(t, err, attest.EnrolNotFound)
	})
	t.Run("enrolled", func(t *testing.T) {
		if ok, err := svc.AKEnrolled(ctx, at.AKPublic()); ok || err != nil {
			t.Fatalf("AKEnrolled before = %v, %v", ok, err)
		}
		ch, err := svc.Start(ctx, "caller-a", "admin", request(t, at, false))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := svc.Finish(ctx, "caller-a", "admin", ch.ID, activate(ch))
		if err != nil || rec.AKName != ch.AKName || rec.EKCertStatus != store.EKCertAbsent || len(rec.EKPublicHash) != 64 {
			t.Fatalf("Finish = %+v, %v", rec, err)
		}
		if e := aud.last(); e.Type != "tpm.enrolled" || e.Outcome != "success" || e.Data["ak_name"] != ch.AKName {
			t.Fatalf("audit = %+v", e)
		}
		if ok, err := svc.AKEnrolled(ctx, at.AKPublic()); !ok || err != nil {
			t.Fatalf("AKEnrolled after = %v, %v", ok, err)
		}
	})
	t.Run("malformed keys", func(t *testing.T) {
		good := request(t, at, false)
		for name, tc := range map[string]struct {
			req  attest.EnrolRequest
			kind string
		}{
			"AK truncated":      {attest.EnrolRequest{EKPublic: good.EKPublic, AKPublic: good.AKPublic[:10]}, attest.EnrolBadAK},
			"EK as AK":          {attest.EnrolRequest{EKPublic: good.EKPublic, AKPublic: good.EKPublic}, attest.EnrolBadAK},
			"AK as EK":          {attest.EnrolRequest{EKPublic: good.AKPublic, AKPublic: good.AKPublic}, attest.EnrolBadEK},
			"EK empty":          {attest.EnrolRequest{AKPublic: good.AKPublic}, attest.EnrolBadEK},
			"EK cert not DER":   {attest.EnrolRequest{EKPublic: good.EKPublic, AKPublic: good.AKPublic, EKCertificate: []byte("nope")}, attest.EnrolEKCertRefused},
			"EK trailing bytes": {attest.EnrolRequest{EKPublic: append(append([]byte{}, good.EKPublic...), 0), AKPublic: good.AKPublic}, attest.EnrolBadEK},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := svc.Start(ctx, "caller-a", "admin", tc.req)
				wantKind(t, err, tc.kind)
			})
		}
	})
}

func TestEnrolmentEKCertificate(t *testing.T) {
	ctx := context.Background()
	sw := swtpmtest.Start(t, swtpmtest.Options{EKCertificate: true})
	at := newAttester(t, sw, tpm.EKRSA)
	st := storetest.OpenSQLite(t)

	// Without a bundle the certificate is checked against the EK only.
	svc := attest.NewEnrolments(st, &events{}, attest.EnrolmentOptions{})
	ch, err := svc.Start(ctx, "c", "admin", request(t, at, true))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := at.ActivateCredential(ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := svc.Finish(ctx, "c", "admin", ch.ID, secret); err != nil || rec.EKCertStatus != store.EKCertUnverified {
		t.Fatalf("no bundle: %+v, %v", rec, err)
	}

	roots, n, err := attest.LoadEKRoots(sw.CACerts)
	if err != nil || n != 2 {
		t.Fatalf("LoadEKRoots = %d, %v", n, err)
	}
	svc = attest.NewEnrolments(st, &events{}, attest.EnrolmentOptions{EKRoots: roots})
	if _, err := svc.Start(ctx, "c", "admin", request(t, at, true)); err != nil {
		t.Fatalf("trusted certificate: %v", err)
	}
	// The chain is checked at the server's time (swtpm's certificates run to 9999, so
	// go back before they were issued).
	early := attest.NewEnrolments(st, &events{}, attest.EnrolmentOptions{EKRoots: roots,
		Now: func() time.Time { return time.Now().AddDate(-1, 0, 0) }})
	_, err = early.Start(ctx, "c", "admin", request(t, at, true))
	wantKind(t, err, attest.EnrolEKCertRefused)
}
