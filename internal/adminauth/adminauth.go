// Package adminauth checks admin bearer tokens. The bootstrap admin token comes from
// LANYARD_ADMIN_TOKEN or, when that is unset, is generated at first start, shown once,
// and stored only as a keyed hash.
package adminauth

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"

	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store"
)

// settingKey names the stored hash of the generated admin token.
const settingKey = "admin_token_hash"

// TokenPrefix starts every generated admin token, so secret scanners can spot a leak.
const TokenPrefix = "lya_"

// Authenticator checks admin tokens.
type Authenticator struct {
	hasher *lifecycle.SecretHasher
	hash   []byte
}

// Bootstrap returns an Authenticator for the configured token, or for the stored one.
// When neither exists it generates a token, stores its hash and returns the token as
// generated: the caller shows it once, and it is never recoverable afterwards.
func Bootstrap(ctx context.Context, st store.Settings, hasher *lifecycle.SecretHasher, configured string) (a *Authenticator, generated string, err error) {
	if configured != "" {
		if len(configured) < 32 {
			return nil, "", errors.New("adminauth: LANYARD_ADMIN_TOKEN must be at least 32 characters")
		}
		return &Authenticator{hasher: hasher, hash: hasher.Hash(configured)}, "", nil
	}
	stored, err := st.GetSetting(ctx, settingKey)
	if err == nil {
		return &Authenticator{hasher: hasher, hash: stored}, "", nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, "", fmt.Errorf("adminauth: read admin token hash: %w", err)
	}
	tok, err := lifecycle.NewSecret(TokenPrefix)
	if err != nil {
		return nil, "", err
	}
	h := hasher.Hash(tok)
	ok, err := st.PutSettingIfAbsent(ctx, settingKey, h)
	if err != nil {
		return nil, "", fmt.Errorf("adminauth: store admin token hash: %w", err)
	}
	if !ok {
		// Another replica bootstrapped first; its token is the one.
		stored, err := st.GetSetting(ctx, settingKey)
		if err != nil {
			return nil, "", fmt.Errorf("adminauth: read admin token hash: %w", err)
		}
		return &Authenticator{hasher: hasher, hash: stored}, "", nil
	}
	return &Authenticator{hasher: hasher, hash: h}, tok, nil
}

// CheckAdminToken reports in constant time whether token is the admin token.
func (a *Authenticator) CheckAdminToken(_ context.Context, token string) bool {
	if token == "" {
		return false
	}
	return hmac.Equal(a.hasher.Hash(token), a.hash)
}
