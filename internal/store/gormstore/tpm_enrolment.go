package gormstore

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm/clause"

	"github.com/lanyardhq/lanyard/internal/store"
)

// CreatePendingTPMEnrolment implements store.TPMEnrolments. ErrConflict if the id exists.
func (s *Store) CreatePendingTPMEnrolment(ctx context.Context, p *store.PendingTPMEnrolment) error {
	if p == nil || p.ID == "" || p.Caller == "" || p.AKName == "" || len(p.SecretHash) == 0 {
		return fmt.Errorf("gormstore: create pending tpm enrolment: id, caller, AK name and secret hash are required")
	}
	p.ExpiresAt = utc(p.ExpiresAt)
	return wrapErr("create pending tpm enrolment", s.w.WithContext(ctx).Create(p).Error)
}

// ConsumePendingTPMEnrolment implements store.TPMEnrolments: it reads and deletes the
// row in one transaction, so two answers to one challenge cannot both consume it.
func (s *Store) ConsumePendingTPMEnrolment(ctx context.Context, id string) (*store.PendingTPMEnrolment, error) {
	out, err := consumeOnce[store.PendingTPMEnrolment](ctx, s, "id", id)
	if err != nil {
		return nil, wrapErr("consume pending tpm enrolment", err)
	}
	out.ExpiresAt = utc(out.ExpiresAt)
	return out, nil
}

// PurgePendingTPMEnrolments implements store.TPMEnrolments.
func (s *Store) PurgePendingTPMEnrolments(ctx context.Context, now time.Time) (int64, error) {
	res := s.w.WithContext(ctx).Where("expires_at < ?", now.UTC()).Delete(&store.PendingTPMEnrolment{})
	if res.Error != nil {
		return 0, wrapErr("purge pending tpm enrolments", res.Error)
	}
	return res.RowsAffected, nil
}

// PutTPMEnrolment implements store.TPMEnrolments as an upsert on the AK name.
func (s *Store) PutTPMEnrolment(ctx context.Context, e *store.TPMEnrolment) error {
	if e == nil || e.AKName == "" || len(e.AKPublic) == 0 || e.EKPublicHash == "" || e.EKCertStatus == "" {
		return fmt.Errorf("gormstore: put tpm enrolment: AK name and public, EK public hash and EK certificate status are required")
	}
	if e.EnrolledAt.IsZero() {
		e.EnrolledAt = now()
	}
	e.EnrolledAt = utc(e.EnrolledAt)
	err := s.w.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "ak_name"}},
		DoUpdates: clause.AssignmentColumns([]string{"ak_public", "ek_public_hash", "ek_cert_status", "enrolled_by", "enrolled_at"}),
	}).Create(e).Error
	return wrapErr("put tpm enrolment", err)
}

// GetTPMEnrolment implements store.TPMEnrolments.
func (s *Store) GetTPMEnrolment(ctx context.Context, akName string) (*store.TPMEnrolment, error) {
	var out store.TPMEnrolment
	if err := s.r.WithContext(ctx).Where("ak_name = ?", akName).Take(&out).Error; err != nil {
		return nil, wrapErr("get tpm enrolment", err)
	}
	out.EnrolledAt = utc(out.EnrolledAt)
	return &out, nil
}
