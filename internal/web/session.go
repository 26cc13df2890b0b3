package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/lanyardhq/lanyard/internal/authz"
	"github.com/lanyardhq/lanyard/internal/store"
)

// session is what a UI session row's Data holds.
type session struct {
	Principal *authz.Principal `json:"principal,omitempty"`
	// CSRF is the synchronizer token every state-changing form of this session carries.
	CSRF string `json:"csrf,omitempty"`

	// Sign-in in progress (kind login): the OIDC state, nonce and PKCE verifier, and
	// where to go afterwards.
	State    string `json:"state,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	Verifier string `json:"verifier,omitempty"`
	Next     string `json:"next,omitempty"`

	// Filled on load, not stored.
	idHash []byte
	kind   string
}

// sessions keeps UI sessions server-side: the cookie carries 256 random bits, the
// database only their SHA-256. Idle and absolute timeouts are checked on every load.
type sessions struct {
	st     store.UISessions
	idle   time.Duration
	max    time.Duration
	secure bool
	now    func() time.Time
}

// loginTTL bounds an OIDC sign-in from redirect to callback.
const loginTTL = 10 * time.Minute

// touchEvery limits last-seen writes to one per session per minute.
const touchEvery = time.Minute

func (m *sessions) cookieName(kind string) string {
	name := "lanyard_session"
	if kind == store.UISessionLogin {
		name = "lanyard_login"
	}
	if m.secure {
		// __Host- cookies must be Secure, Path=/ and host-only: no subdomain can set them.
		return "__Host-" + name
	}
	return name
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// create stores a new session of kind and sets its cookie on w.
func (m *sessions) create(ctx context.Context, w http.ResponseWriter, kind string, s *session) error {
	now := m.now().UTC().Truncate(time.Microsecond)
	ttl := m.max
	if kind == store.UISessionLogin {
		ttl = loginTTL
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tok := randomToken()
	if err := m.st.CreateUISession(ctx, &store.UISession{IDHash: hashToken(tok), Kind: kind, Data: data,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
		return fmt.Errorf("web: create session: %w", err)
	}
	s.idHash, s.kind = hashToken(tok), kind
	http.SetCookie(w, m.cookie(kind, tok, int(ttl/time.Second)))
	return nil
}

func (m *sessions) cookie(kind, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: m.cookieName(kind), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: m.secure, SameSite: http.SameSiteLaxMode,
	}
}

// errNoSession is a request without a live session of the wanted kind.
var errNoSession = errors.New("web: no session")

// load returns the live session of kind named by r's cookie. An expired or idle
// session is deleted and reported as errNoSession.
func (m *sessions) load(ctx context.Context, r *http.Request, kind string) (*session, error) {
	c, err := r.Cookie(m.cookieName(kind))
	if err != nil || len(c.Value) != 43 {
		return nil, errNoSession
	}
	id := hashToken(c.Value)
	row, err := m.st.GetUISession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("web: load session: %w", err)
	}
	now := m.now().UTC()
	if row.Kind != kind || !now.Before(row.ExpiresAt) || (kind == store.UISessionUser && now.Sub(row.LastSeenAt) >= m.idle) {
		_ = m.st.DeleteUISession(ctx, id)
		return nil, errNoSession
	}
	var s session
	if err := json.Unmarshal(row.Data, &s); err != nil {
		return nil, fmt.Errorf("web: decode session: %w", err)
	}
	s.idHash, s.kind = id, kind
	if kind == store.UISessionUser && now.Sub(row.LastSeenAt) >= touchEvery {
		if err := m.st.TouchUISession(ctx, id, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("web: touch session: %w", err)
		}
	}
	return &s, nil
}

// destroy deletes s and expires its cookie.
func (m *sessions) destroy(ctx context.Context, w http.ResponseWriter, s *session) error {
	http.SetCookie(w, m.cookie(s.kind, "", -1))
	return m.st.DeleteUISession(ctx, s.idHash)
}

// checkCSRF compares the submitted synchronizer token with the session's in constant
// time.
func checkCSRF(s *session, submitted string) bool {
	return s != nil && s.CSRF != "" && subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(submitted)) == 1
}
