package server

import (
	"context"
	"log/slog"

	"github.com/lanyardhq/lanyard/internal/config"
	"github.com/lanyardhq/lanyard/internal/federation"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
)

// newFederation builds the trusted-issuer service from the configured issuers and the
// stored ones. Keys are fetched by its Run task, not here: an unreachable issuer must
// not stop the server from starting.
func newFederation(ctx context.Context, cfg config.Config, st *gormstore.Store, aud federation.Auditor, log *slog.Logger) (*federation.Service, error) {
	issuers, err := federation.ParseConfigIssuers(cfg.FederationIssuers)
	if err != nil {
		return nil, err
	}
	fed := federation.New(st, aud, federation.Options{
		Config: issuers, Refresh: cfg.FederationRefresh, MinRefetch: cfg.FederationMinRefetch, Logger: log,
	})
	if err := fed.Load(ctx); err != nil {
		return nil, err
	}
	return fed, nil
}
