package gormstore

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/lanyardhq/lanyard/internal/store"
)

var _ store.Rotations = (*Store)(nil)

// lease is a row of the leases table.
type lease struct {
	Name      string `gorm:"primaryKey"`
	Owner     string
	ExpiresAt time.Time
}

// secretDestroy is a row of the secret_destroys table.
type secretDestroy struct {
	Path      string `gorm:"primaryKey"`
	Reason    string
	CreatedAt time.Time
}

func normRotation(r *store.Rotation) {
	r.CreatedAt, r.UpdatedAt = utc(r.CreatedAt), utc(r.UpdatedAt)
	r.NotBefore, r.GraceUntil, r.FinishedAt = utcPtr(r.NotBefore), utcPtr(r.GraceUntil), utcPtr(r.FinishedAt)
}

// CreateRotation implements store.Rotations.
func (s *Store) CreateRotation(ctx context.Context, r *store.Rotation) error {
	const op = "create rotation"
	if r == nil || r.ID == "" || r.Kind == "" || r.Subject == "" || r.Step == "" {
		return fmt.Errorf("gormstore: %s: id, kind, subject and step are required", op)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now()
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	normRotation(r)
	return wrapErr(op, s.w.WithContext(ctx).Create(r).Error)
}

// UpdateRotation implements store.Rotations. ID, Kind, Subject and CreatedAt are
// immutable; UpdatedAt is set to now.
func (s *Store) UpdateRotation(ctx context.Context, id string, fn func(r *store.Rotation) error) (*store.Rotation, error) {
	out, fnErr, err := updateRow(ctx, s, "id", id, []string{"id", "kind", "subject", "created_at"}, fn, func(cur store.Rotation, next *store.Rotation) {
		next.ID, next.Kind, next.Subject, next.CreatedAt = cur.ID, cur.Kind, cur.Subject, cur.CreatedAt
		next.UpdatedAt = now()
		normRotation(next)
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, wrapErr("update rotation", err)
	}
	return out, nil
}

// OpenRotations implements store.Rotations.
func (s *Store) OpenRotations(ctx context.Context) ([]store.Rotation, error) {
	out := []store.Rotation{}
	err := s.r.WithContext(ctx).Where("finished_at IS NULL").Order("created_at, id").Find(&out).Error
	return out, wrapErr("open rotations", err)
}

// ListRotations implements store.Rotations.
func (s *Store) ListRotations(ctx context.Context, kind, subject string, n int) ([]store.Rotation, error) {
	out := []store.Rotation{}
	err := s.r.WithContext(ctx).Where("kind = ? AND subject = ?", kind, subject).
		Order("created_at DESC, id DESC").Limit(limit(n)).Find(&out).Error
	return out, wrapErr("list rotations", err)
}

// AcquireLease implements store.Rotations with one conditional UPDATE (the owner or an
// expired lease) and, when no row exists, an INSERT that loses to a concurrent one.
func (s *Store) AcquireLease(ctx context.Context, name, owner string, at, expiresAt time.Time) (bool, error) {
	const op = "acquire lease"
	at, expiresAt = utc(at), utc(expiresAt)
	res := s.w.WithContext(ctx).Model(&lease{}).
		Where("name = ? AND (owner = ? OR expires_at < ?)", name, owner, at).
		UpdateColumns(map[string]any{"owner": owner, "expires_at": expiresAt})
	if res.Error != nil {
		return false, wrapErr(op, res.Error)
	}
	if res.RowsAffected == 1 {
		return true, nil
	}
	res = s.w.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&lease{Name: name, Owner: owner, ExpiresAt: expiresAt})
	if res.Error != nil {
		return false, wrapErr(op, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// ReleaseLease implements store.Rotations.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	err := s.w.WithContext(ctx).Where("name = ? AND owner = ?", name, owner).Delete(&lease{}).Error
	return wrapErr("release lease", err)
}

// PutRotationPolicy implements store.Rotations.
func (s *Store) PutRotationPolicy(ctx context.Context, p *store.RotationPolicy) error {
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = now()
	}
	p.UpdatedAt = utc(p.UpdatedAt)
	err := s.w.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "agent_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"interval_seconds", "grace_seconds", "updated_at"}),
	}).Create(p).Error
	return wrapErr("put rotation policy", err)
}

// GetRotationPolicy implements store.Rotations.
func (s *Store) GetRotationPolicy(ctx context.Context, agentID string) (*store.RotationPolicy, error) {
	var p store.RotationPolicy
	if err := s.r.WithContext(ctx).Where("agent_id = ?", agentID).Take(&p).Error; err != nil {
		return nil, wrapErr("get rotation policy", err)
	}
	return &p, nil
}

// DeleteRotationPolicy implements store.Rotations.
func (s *Store) DeleteRotationPolicy(ctx context.Context, agentID string) error {
	return wrapErr("delete rotation policy", s.w.WithContext(ctx).Where("agent_id = ?", agentID).Delete(&store.RotationPolicy{}).Error)
}

// ActiveCredentials implements store.Rotations.
func (s *Store) ActiveCredentials(ctx context.Context, after string, n int, policyOnly bool) ([]store.DueCredential, error) {
	if n <= 0 || n > 1000 {
		n = 1000
	}
	type row struct {
		store.Credential
		Namespace       string
		Name            string
		Status          string
		IntervalSeconds *int64
		GraceSeconds    *int64
		PolicyUpdatedAt *time.Time
	}
	var rows []row
	policies := "LEFT JOIN rotation_policies p ON p.agent_id = c.agent_id"
	if policyOnly {
		policies = "JOIN rotation_policies p ON p.agent_id = c.agent_id AND p.interval_seconds > 0"
	}
	err := s.r.WithContext(ctx).Table("credentials AS c").
		Select("c.*, a.namespace, a.name, a.status, p.interval_seconds, p.grace_seconds, p.updated_at AS policy_updated_at").
		Joins("JOIN agents a ON a.id = c.agent_id").
		Joins(policies).
		// Federated credentials are not rotated: they hold no secret of Lanyard's.
		Where("c.state = ? AND c.type <> ? AND a.status IN ? AND c.agent_id > ?", store.CredentialActive, store.CredentialFederated,
			[]string{store.StatusPending, store.StatusActive, store.StatusSuspended}, after).
		Order("c.agent_id, c.created_at").Limit(n).Scan(&rows).Error
	if err != nil {
		return nil, wrapErr("active credentials", err)
	}
	out := make([]store.DueCredential, 0, len(rows))
	for _, r := range rows {
		d := store.DueCredential{AgentID: r.AgentID, Namespace: r.Namespace, Name: r.Name, Status: r.Status, Credential: r.Credential}
		d.CreatedAt = utc(d.CreatedAt)
		d.ExpiresAt = utcPtr(d.ExpiresAt)
		if r.IntervalSeconds != nil {
			d.Policy = &store.RotationPolicy{AgentID: r.AgentID, IntervalSeconds: *r.IntervalSeconds, GraceSeconds: *r.GraceSeconds}
			if r.PolicyUpdatedAt != nil {
				d.Policy.UpdatedAt = utc(*r.PolicyUpdatedAt)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// DeleteExpiredCredentials implements store.Rotations.
func (s *Store) DeleteExpiredCredentials(ctx context.Context, agentID string, at time.Time) (int64, error) {
	var n int64
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Where("agent_id = ? AND state = ? AND expires_at IS NOT NULL AND expires_at < ?", agentID, store.CredentialRetiring, utc(at)).
			Delete(&store.Credential{})
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		if n > 0 {
			return bumpGeneration(tx, agentID)
		}
		return nil
	})
	return n, wrapErr("delete expired credentials", err)
}

// GetAgentByName implements store.Rotations.
func (s *Store) GetAgentByName(ctx context.Context, namespace, name string) (*store.Agent, error) {
	var a store.Agent
	if err := s.r.WithContext(ctx).Where("namespace = ? AND name = ?", namespace, name).Take(&a).Error; err != nil {
		return nil, wrapErr("get agent by name", err)
	}
	normAgent(&a)
	return &a, nil
}

// AddSecretDestroy implements store.Rotations.
func (s *Store) AddSecretDestroy(ctx context.Context, path, reason string) error {
	err := s.w.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&secretDestroy{Path: path, Reason: reason, CreatedAt: now()}).Error
	return wrapErr("add secret destroy", err)
}

// SecretDestroys implements store.Rotations.
func (s *Store) SecretDestroys(ctx context.Context) ([]string, error) {
	var out []string
	err := s.r.WithContext(ctx).Model(&secretDestroy{}).Order("created_at").Limit(1000).Pluck("path", &out).Error
	return out, wrapErr("secret destroys", err)
}

// DoneSecretDestroy implements store.Rotations.
func (s *Store) DoneSecretDestroy(ctx context.Context, path string) error {
	return wrapErr("done secret destroy", s.w.WithContext(ctx).Where("path = ?", path).Delete(&secretDestroy{}).Error)
}
