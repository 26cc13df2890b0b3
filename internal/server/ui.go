package server

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/lanyardhq/lanyard/internal/adminauth"
	"github.com/lanyardhq/lanyard/internal/attest"
	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/lifecycle"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/web"
)

// newUI builds the web UI from the configuration: always with the bootstrap admin token
// as break-glass sign-in, and with OIDC single sign-on when a client id is configured.
func newUI(cfg config.Config, log *slog.Logger, svc *lifecycle.Service, att *attest.Service, aud *audit.Log,
	st *gormstore.Store, admin *adminauth.Authenticator) (*web.Handler, error) {
	o := web.Options{Issuer: cfg.Issuer, SessionIdle: cfg.UISessionIdle, SessionMax: cfg.UISessionMax, Logger: log}
	if cfg.UIOIDCEnabled() {
		o.OIDC = &web.OIDCOptions{
			Issuer: cfg.UIOIDCIssuer, ClientID: cfg.UIOIDCClientID, ClientSecret: cfg.UIOIDCClientSecret,
			Scopes: strings.Fields(cfg.UIOIDCScopes), Tenant: cfg.UIEntraTenant,
			RoleClaims: splitComma(cfg.UIRoleClaims), RoleMap: cfg.UIRoleMappings(),
		}
	}
	return web.New(web.Deps{Lifecycle: svc, Attest: att, Audit: aud, Store: st, Admin: admin}, o)
}

func splitComma(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// purgeUISessions deletes expired and idle web UI sessions.
func (s *Server) purgeUISessions(ctx context.Context) error {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if n, err := s.st.PurgeUISessions(ctx, now, now.Add(-s.cfg.UISessionIdle)); err != nil {
				s.log.Warn("purge ui sessions", "err", err)
			} else if n > 0 {
				s.log.Debug("purged ui sessions", "count", n)
			}
		}
	}
}
