package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/lanyardhq/lanyard/internal/store"
)

// Step-wise rotation
//
// Rotate does a whole rotation at once, activating the new key immediately. Scheduled
// rotation (package rotation) instead drives these steps one at a time, persisting its
// progress between them, so that the new key is published in the JWKS for a while
// before it signs anything and an interruption at any point resumes where it stopped:
//
//	StageKey      generate, write the private key to the secrets backend
//	RecordNext    record it in state next: published, not signing
//	ActivateNext  activate it and retire the previous active key (published until
//	              NotAfter, when the last token it signed has expired)
//
// Each is idempotent: called again with the same input after an interruption, it
// finishes the work or finds it done.

// Staged is a new key whose private half is in the secrets backend.
type Staged struct {
	KID     string
	Alg     string
	Path    string
	Version int
}

// StageKey generates a key for alg and writes its private half to the secrets backend.
// Nothing refers to it yet: a crash after it leaves an unreferenced secret.
func (m *Manager) StageKey(ctx context.Context, alg string) (Staged, error) {
	if algIndex(alg) < 0 {
		return Staged{}, fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	priv, err := m.generate(alg)
	if err != nil {
		return Staged{}, fmt.Errorf("keys: generate %s key: %w", alg, err)
	}
	kid, thumb, _, err := publicJWK(priv.Public(), alg)
	if err != nil {
		return Staged{}, err
	}
	pemText, err := marshalPrivate(priv)
	if err != nil {
		return Staged{}, err
	}
	path := secretPath(thumb)
	v, err := m.sb.Put(ctx, path, map[string]string{secretKeyPEM: pemText, secretKeyKID: kid, secretKeyAlg: alg})
	if err != nil {
		return Staged{}, fmt.Errorf("keys: store %s private key %s: %w", alg, kid, err)
	}
	return Staged{KID: kid, Alg: alg, Path: path, Version: v}, nil
}

// RecordNext records a staged key in state next, reading its public half back from the
// secrets backend (so the record can only describe what is stored), and reloads: from
// here this replica publishes it. A key already recorded is left as it is.
func (m *Manager) RecordNext(ctx context.Context, st Staged) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sec, err := m.sb.Get(ctx, st.Path, st.Version)
	if err != nil {
		return fmt.Errorf("keys: read staged %s key %s: %w", st.Alg, st.KID, err)
	}
	pub, err := publicFromPEM(sec.Data[secretKeyPEM])
	if err != nil {
		return fmt.Errorf("keys: staged %s key %s: %w", st.Alg, st.KID, err)
	}
	kid, _, pubJWK, err := publicJWK(pub, st.Alg)
	if err != nil {
		return err
	}
	if kid != st.KID {
		return fmt.Errorf("keys: staged key at %s is %s, want %s", st.Path, kid, st.KID)
	}
	rec := &store.SigningKey{KID: kid, Alg: st.Alg, State: store.KeyNext, PublicJWK: pubJWK,
		SecretPath: st.Path, SecretVersion: st.Version, CreatedAt: m.now().UTC()}
	switch err := m.st.CreateSigningKey(ctx, rec); {
	case errors.Is(err, store.ErrConflict):
		// Recorded before an interruption.
	case err != nil:
		return fmt.Errorf("keys: record %s key %s: %w", st.Alg, kid, err)
	default:
		m.log.Info("keys: published next signing key", "kid", kid, "alg", st.Alg)
		m.emit(ctx, Event{Type: EventCreated, KID: kid, Alg: st.Alg})
	}
	recs, err := m.list(ctx)
	if err != nil {
		return err
	}
	return m.install(ctx, recs)
}

// ActivateNext activates the recorded key kid of alg, retires every other active key
// of alg, and reloads. Activating before retiring keeps an active key at every moment.
func (m *Manager) ActivateNext(ctx context.Context, alg, kid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.list(ctx)
	if err != nil {
		return err
	}
	var target *store.SigningKey
	var others []store.SigningKey
	for i := range recs {
		r := recs[i]
		if r.Alg != alg {
			continue
		}
		if r.KID == kid {
			target = &recs[i]
		} else if r.State == store.KeyActive {
			others = append(others, r)
		}
	}
	if target == nil {
		return fmt.Errorf("keys: activate %s key %s: %w", alg, kid, store.ErrNotFound)
	}
	if target.State == store.KeyRetired {
		return fmt.Errorf("keys: activate %s key %s: it is already retired", alg, kid)
	}
	// The private half must load before the key may sign.
	if _, err := m.loadPrivate(ctx, target); err != nil {
		return err
	}
	if err := m.activate(ctx, *target); err != nil {
		return err
	}
	if _, err := m.retireAll(ctx, others); err != nil {
		return err
	}
	if recs, err = m.list(ctx); err != nil {
		return err
	}
	return m.install(ctx, recs)
}

// publicFromPEM returns the public key of a PKCS#8 PEM private key.
func publicFromPEM(pemText string) (crypto.PublicKey, error) {
	block, rest := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("secret does not hold exactly one PKCS#8 PEM block")
	}
	defer clear(block.Bytes)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return s.Public(), nil
}
