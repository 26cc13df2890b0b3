package secrets_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lanyardhq/lanyard/internal/secrets"
)

func TestSecretRedacted(t *testing.T) {
	s := &secrets.Secret{
		Data:      map[string]string{"private_key": "TOPSECRETVALUE", "hint": "x"},
		Version:   3,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("loaded", "secret", s, "value", *s)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("loaded", "secret", s)
	out := buf.String() + fmt.Sprintf(" %v %+v %#v %s %v", s, s, s, s, *s)
	if strings.Contains(out, "TOPSECRETVALUE") || strings.Contains(out, "private_key") {
		t.Fatalf("Secret printed its data: %s", out)
	}
	if !strings.Contains(out, "REDACTED") || !strings.Contains(out, `"version":3`) {
		t.Errorf("redacted form lacks the useful fields: %s", out)
	}
}

func TestValidPath(t *testing.T) {
	for _, p := range []string{
		"a", "0", "lanyard/signing-keys/abc_def-ghi", "agents/agt_01j/credentials/crd-1",
		"a.b", "a-b", "a_b", "a/b/c/d/e", "v1.enc", strings.Repeat("a", secrets.MaxSegmentLen),
	} {
		err := secrets.ValidPath(p)
		if err != nil {
			t.Errorf("ValidPath(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "A", "a/", "/a", "a//b", "..", "a/../b", "a..b", ".a", "_a", "a/-b", "a b", "é"} {
		if err := secrets.ValidPath(p); !errors.Is(err, secrets.ErrInvalidPath) {
			t.Errorf("ValidPath(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
}

func TestValidDataDoesNotEchoValues(t *testing.T) {
	err := secrets.ValidData(map[string]string{"k": "SECRET\xff"})
	if err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("error echoes the value: %v", err)
	}
}
