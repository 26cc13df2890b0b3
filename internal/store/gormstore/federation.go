package gormstore

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/lanyardhq/lanyard/internal/store"
)

// CreateFederationIssuer implements store.Federation. i.CreatedAt defaults to now.
func (s *Store) CreateFederationIssuer(ctx context.Context, i *store.FederationIssuer) error {
	if i == nil || i.Issuer == "" {
		return fmt.Errorf("gormstore: create federation issuer: issuer is required")
	}
	if i.CreatedAt.IsZero() {
		i.CreatedAt = now()
	}
	i.CreatedAt = utc(i.CreatedAt)
	if i.Algs == nil {
		i.Algs = store.StringList{}
	}
	return wrapErr("create federation issuer", s.w.WithContext(ctx).Create(i).Error)
}

// ListFederationIssuers implements store.Federation.
func (s *Store) ListFederationIssuers(ctx context.Context) ([]store.FederationIssuer, error) {
	out := []store.FederationIssuer{}
	if err := s.r.WithContext(ctx).Order("issuer").Find(&out).Error; err != nil {
		return nil, wrapErr("list federation issuers", err)
	}
	return out, nil
}

// DeleteFederationIssuer implements store.Federation.
func (s *Store) DeleteFederationIssuer(ctx context.Context, issuer string) error {
	res := s.w.WithContext(ctx).Where("issuer = ?", issuer).Delete(&store.FederationIssuer{})
	if res.Error == nil && res.RowsAffected == 0 {
		return wrapErr("delete federation issuer", gorm.ErrRecordNotFound)
	}
	return wrapErr("delete federation issuer", res.Error)
}

// AddCredential implements store.Federation. c.AgentID is set to agentID when empty and
// must equal it otherwise.
func (s *Store) AddCredential(ctx context.Context, agentID string, c *store.Credential) error {
	const op = "add credential"
	if c == nil {
		return fmt.Errorf("gormstore: %s: nil credential", op)
	}
	if err := prepareCredential(c, agentID); err != nil {
		return fmt.Errorf("gormstore: %s: %w", op, err)
	}
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := bumpGeneration(tx, agentID); err != nil {
			return err
		}
		return tx.Create(c).Error
	})
	return wrapErr(op, err)
}

// DeleteCredential implements store.Federation.
func (s *Store) DeleteCredential(ctx context.Context, agentID, credentialID string) error {
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Where("agent_id = ? AND id = ?", agentID, credentialID).Delete(&store.Credential{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return gorm.ErrRecordNotFound
		}
		return bumpGeneration(tx, agentID)
	})
	return wrapErr("delete credential", err)
}
