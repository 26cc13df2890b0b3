package gormstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/lanyardhq/lanyard/internal/store"
)

// CreateChallenge implements store.Attestations. ErrConflict if the nonce exists.
func (s *Store) CreateChallenge(ctx context.Context, c *store.AttestationChallenge) error {
	if c == nil || len(c.NonceHash) == 0 || c.ClientID == "" {
		return fmt.Errorf("gormstore: create challenge: nonce hash and client id are required")
	}
	c.ExpiresAt = utc(c.ExpiresAt)
	return wrapErr("create challenge", s.w.WithContext(ctx).Create(c).Error)
}

// ConsumeChallenge implements store.Attestations: it reads and deletes the challenge in
// one transaction, so two requests with the same nonce cannot both consume it.
func (s *Store) ConsumeChallenge(ctx context.Context, nonceHash []byte) (*store.AttestationChallenge, error) {
	out, err := consumeOnce[store.AttestationChallenge](ctx, s, "nonce_hash", nonceHash)
	if err != nil {
		return nil, wrapErr("consume challenge", err)
	}
	out.ExpiresAt = utc(out.ExpiresAt)
	return out, nil
}

// updateRow is the compare-and-swap update of one row of T, in one transaction on the
// writer: it locks the row whose column equals key, lets fn change a copy, lets keep
// restore the fields that never change, and writes every column but omit. fnErr is
// fn's error, returned unchanged with nothing written; err is the database's.
func updateRow[T any](ctx context.Context, s *Store, column string, key any, omit []string,
	fn func(*T) error, keep func(cur T, next *T)) (out *T, fnErr, err error) {
	err = s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var cur T
		if err := tx.Clauses(forUpdate).Where(column+" = ?", key).Take(&cur).Error; err != nil {
			return err
		}
		next := cur
		if err := fn(&next); err != nil {
			fnErr = err
			return err
		}
		keep(cur, &next)
		if err := tx.Model(new(T)).Where(column+" = ?", key).Select("*").Omit(omit...).UpdateColumns(&next).Error; err != nil {
			return err
		}
		out = &next
		return nil
	})
	return out, fnErr, err
}

// consumeOnce reads the row of T whose column equals key and deletes it, in one
// transaction on the writer: of two concurrent callers exactly one gets the row, the
// other gorm.ErrRecordNotFound. It serves single-use values (nonces, enrolment
// challenges).
func consumeOnce[T any](ctx context.Context, s *Store, column string, key any) (*T, error) {
	var out T
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Clauses(forUpdate).Where(column+" = ?", key).Take(&out).Error; err != nil {
			return err
		}
		res := tx.Where(column+" = ?", key).Delete(new(T))
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return gorm.ErrRecordNotFound
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// PurgeChallenges implements store.Attestations.
func (s *Store) PurgeChallenges(ctx context.Context, now time.Time) (int64, error) {
	res := s.w.WithContext(ctx).Where("expires_at < ?", now.UTC()).Delete(&store.AttestationChallenge{})
	if res.Error != nil {
		return 0, wrapErr("purge challenges", res.Error)
	}
	return res.RowsAffected, nil
}

// CountChallenges implements store.Attestations.
func (s *Store) CountChallenges(ctx context.Context, clientID string, now time.Time) (int64, error) {
	var n int64
	err := s.r.WithContext(ctx).Model(&store.AttestationChallenge{}).
		Where("client_id = ? AND expires_at > ?", clientID, now.UTC()).Count(&n).Error
	return n, wrapErr("count challenges", err)
}

// CreateAttestation implements store.Attestations. ErrConflict if the id exists.
func (s *Store) CreateAttestation(ctx context.Context, r *store.AttestationResult) error {
	if r == nil || r.ID == "" || r.AgentID == "" || r.Status == "" {
		return fmt.Errorf("gormstore: create attestation: id, agent id and status are required")
	}
	r.IssuedAt, r.ExpiresAt = utc(r.IssuedAt), utc(r.ExpiresAt)
	return wrapErr("create attestation", s.w.WithContext(ctx).Create(r).Error)
}

// ListAttestations implements store.Attestations: newest first (ids are time-ordered).
func (s *Store) ListAttestations(ctx context.Context, agentID string, n int) ([]store.AttestationResult, error) {
	out := []store.AttestationResult{}
	err := s.r.WithContext(ctx).Where("agent_id = ?", agentID).Order("id DESC").Limit(limit(n)).Find(&out).Error
	if err != nil {
		return nil, wrapErr("list attestations", err)
	}
	for i := range out {
		out[i].IssuedAt, out[i].ExpiresAt = utc(out[i].IssuedAt), utc(out[i].ExpiresAt)
	}
	return out, nil
}

// UpdateTPMCounters implements store.Attestations as a compare-and-swap in one
// transaction (row lock on PostgreSQL; SQLite's single writer serialises).
func (s *Store) UpdateTPMCounters(ctx context.Context, akName string, fn func(cur *store.TPMCounters) (*store.TPMCounters, error)) error {
	var fnErr error
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var cur store.TPMCounters
		var curp *store.TPMCounters
		err := tx.Clauses(forUpdate).Where("ak_name = ?", akName).Take(&cur).Error
		switch {
		case err == nil:
			curp = &cur
		case errors.Is(err, gorm.ErrRecordNotFound):
		default:
			return err
		}
		next, err := fn(curp)
		if err != nil {
			fnErr = err
			return err
		}
		next.AKName = akName
		next.UpdatedAt = now()
		if curp == nil {
			return tx.Create(next).Error
		}
		return tx.Model(&store.TPMCounters{}).Where("ak_name = ?", akName).
			Select("*").Omit("ak_name").UpdateColumns(next).Error
	})
	if fnErr != nil {
		return fnErr
	}
	return wrapErr("update tpm counters", err)
}
