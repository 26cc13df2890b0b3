package gormstore

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm/clause"

	"github.com/lanyardhq/lanyard/internal/store"
)

// CreateSigningKey implements store.SigningKeys. k.KID and k.PublicJWK are required;
// k.CreatedAt defaults to now. ErrConflict if the kid exists.
func (s *Store) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	const op = "create signing key"
	switch {
	case k == nil:
		return fmt.Errorf("gormstore: %s: nil key", op)
	case k.KID == "":
		return fmt.Errorf("gormstore: %s: kid is required", op)
	case len(k.PublicJWK) == 0:
		return fmt.Errorf("gormstore: %s: public JWK is required", op)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	normKey(k)
	return wrapErr(op, s.w.WithContext(ctx).Create(k).Error)
}

// ListSigningKeys implements store.SigningKeys: ordered by CreatedAt, then kid.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	out := []store.SigningKey{}
	if err := s.r.WithContext(ctx).Order("created_at, kid").Find(&out).Error; err != nil {
		return nil, wrapErr("list signing keys", err)
	}
	return out, nil
}

// UpdateSigningKey implements store.SigningKeys as a compare-and-swap closure. fn
// receives a copy of the stored key; KID and CreatedAt are immutable and restored.
// An error from fn is returned unchanged and nothing is written.
func (s *Store) UpdateSigningKey(ctx context.Context, kid string, fn func(k *store.SigningKey) error) (*store.SigningKey, error) {
	out, fnErr, err := updateRow(ctx, s, "kid", kid, []string{"kid", "created_at"}, fn, func(cur store.SigningKey, next *store.SigningKey) {
		next.KID, next.CreatedAt = cur.KID, cur.CreatedAt
		normKey(next)
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, wrapErr("update signing key", err)
	}
	return out, nil
}

func normKey(k *store.SigningKey) {
	k.CreatedAt = utc(k.CreatedAt)
	k.ActivatedAt, k.RetiredAt, k.NotAfter = utcPtr(k.ActivatedAt), utcPtr(k.RetiredAt), utcPtr(k.NotAfter)
}

// RevokeToken implements store.Revocations. Revoking a revoked jti keeps the first
// record and is not an error. t.JTI and t.ExpiresAt are required; RevokedAt defaults
// to now.
func (s *Store) RevokeToken(ctx context.Context, t store.RevokedToken) error {
	const op = "revoke token"
	switch {
	case t.JTI == "":
		return fmt.Errorf("gormstore: %s: jti is required", op)
	case t.ExpiresAt.IsZero():
		return fmt.Errorf("gormstore: %s: expiry is required", op)
	}
	if t.RevokedAt.IsZero() {
		t.RevokedAt = now()
	}
	t.ExpiresAt, t.RevokedAt = utc(t.ExpiresAt), utc(t.RevokedAt)
	err := s.w.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&t).Error
	return wrapErr(op, err)
}

// IsTokenRevoked implements store.Revocations.
func (s *Store) IsTokenRevoked(ctx context.Context, jti string) (bool, error) {
	var n int64
	// LIMIT 1 inside: the primary key makes it at most one row anyway, and the
	// query stays an index probe.
	err := s.r.WithContext(ctx).Model(&store.RevokedToken{}).Where("jti = ?", jti).Limit(1).Count(&n).Error
	if err != nil {
		return false, wrapErr("is token revoked", err)
	}
	return n > 0, nil
}

// ListRevocations implements store.Revocations.
func (s *Store) ListRevocations(ctx context.Context, now time.Time) ([]store.RevokedToken, error) {
	var out []store.RevokedToken
	if err := s.r.WithContext(ctx).Where("expires_at >= ?", now.UTC()).Order("jti").Find(&out).Error; err != nil {
		return nil, wrapErr("list revocations", err)
	}
	for i := range out {
		out[i].ExpiresAt, out[i].RevokedAt = utc(out[i].ExpiresAt), utc(out[i].RevokedAt)
	}
	return out, nil
}

// PurgeRevocations implements store.Revocations: it deletes revocations whose token
// expired strictly before now and returns how many.
func (s *Store) PurgeRevocations(ctx context.Context, now time.Time) (int64, error) {
	res := s.w.WithContext(ctx).Where("expires_at < ?", now.UTC()).Delete(&store.RevokedToken{})
	if res.Error != nil {
		return 0, wrapErr("purge revocations", res.Error)
	}
	return res.RowsAffected, nil
}

// setting is a row of the settings table.
type setting struct {
	Key   string `gorm:"primaryKey"`
	Value []byte
}

func (setting) TableName() string { return "settings" }

// GetSetting implements store.Settings. ErrNotFound if key is not set.
func (s *Store) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var row setting
	if err := s.r.WithContext(ctx).Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: key}).Take(&row).Error; err != nil {
		return nil, wrapErr("get setting", err)
	}
	if row.Value == nil {
		row.Value = []byte{}
	}
	return row.Value, nil
}

// PutSettingIfAbsent implements store.Settings atomically (INSERT … ON CONFLICT DO
// NOTHING): of concurrent callers for one key exactly one stores.
func (s *Store) PutSettingIfAbsent(ctx context.Context, key string, value []byte) (bool, error) {
	res := s.w.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&setting{Key: key, Value: nonNil(value)})
	if res.Error != nil {
		return false, wrapErr("put setting if absent", res.Error)
	}
	return res.RowsAffected == 1, nil
}

// PutSetting implements store.Settings: it stores value, replacing any previous one.
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	err := s.w.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "key"}},
		DoUpdates: clause.AssignmentColumns([]string{"value"}),
	}).Create(&setting{Key: key, Value: nonNil(value)}).Error
	return wrapErr("put setting", err)
}

// nonNil maps nil to an empty value: the column is NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
