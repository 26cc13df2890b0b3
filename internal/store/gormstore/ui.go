package gormstore

import (
	"context"
	"fmt"
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

var (
	_ store.UISessions = (*Store)(nil)
	_ store.Counter    = (*Store)(nil)
)

// CreateUISession implements store.UISessions.
func (s *Store) CreateUISession(ctx context.Context, sess *store.UISession) error {
	if sess == nil || len(sess.IDHash) == 0 || sess.Kind == "" {
		return fmt.Errorf("gormstore: create ui session: id hash and kind are required")
	}
	sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt = utc(sess.CreatedAt), utc(sess.LastSeenAt), utc(sess.ExpiresAt)
	return wrapErr("create ui session", s.w.WithContext(ctx).Create(sess).Error)
}

// GetUISession implements store.UISessions.
func (s *Store) GetUISession(ctx context.Context, idHash []byte) (*store.UISession, error) {
	var out store.UISession
	if err := s.r.WithContext(ctx).Where("id_hash = ?", idHash).Take(&out).Error; err != nil {
		return nil, wrapErr("get ui session", err)
	}
	out.CreatedAt, out.LastSeenAt, out.ExpiresAt = utc(out.CreatedAt), utc(out.LastSeenAt), utc(out.ExpiresAt)
	return &out, nil
}

// TouchUISession implements store.UISessions.
func (s *Store) TouchUISession(ctx context.Context, idHash []byte, at time.Time) error {
	res := s.w.WithContext(ctx).Model(&store.UISession{}).Where("id_hash = ?", idHash).
		UpdateColumn("last_seen_at", utc(at))
	if res.Error != nil {
		return wrapErr("touch ui session", res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("gormstore: touch ui session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteUISession implements store.UISessions.
func (s *Store) DeleteUISession(ctx context.Context, idHash []byte) error {
	return wrapErr("delete ui session", s.w.WithContext(ctx).Where("id_hash = ?", idHash).Delete(&store.UISession{}).Error)
}

// PurgeUISessions implements store.UISessions.
func (s *Store) PurgeUISessions(ctx context.Context, now, idleBefore time.Time) (int64, error) {
	res := s.w.WithContext(ctx).Where("expires_at < ? OR last_seen_at < ?", utc(now), utc(idleBefore)).Delete(&store.UISession{})
	if res.Error != nil {
		return 0, wrapErr("purge ui sessions", res.Error)
	}
	return res.RowsAffected, nil
}

// CountAgentsBy implements store.Counter.
func (s *Store) CountAgentsBy(ctx context.Context, field string) (map[string]int64, error) {
	switch field {
	case "status", "namespace", "risk_level":
	default:
		return nil, fmt.Errorf("gormstore: count agents by %q: not a countable field", field)
	}
	var rows []struct {
		K string
		N int64
	}
	err := s.r.WithContext(ctx).Model(&store.Agent{}).
		Select(field + " AS k, count(*) AS n").Group(field).Scan(&rows).Error
	if err != nil {
		return nil, wrapErr("count agents by "+field, err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.K] = r.N
	}
	return out, nil
}

// CountAudit implements store.Counter with the (type, time) index.
func (s *Store) CountAudit(ctx context.Context, typ string, since, until time.Time) (int64, error) {
	var n int64
	err := s.r.WithContext(ctx).Model(&store.AuditEvent{}).
		Where(`type = ? AND "time" >= ? AND "time" < ?`, typ, utc(since), utc(until)).Count(&n).Error
	return n, wrapErr("count audit events", err)
}

// CountAttested implements store.Counter.
func (s *Store) CountAttested(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.r.WithContext(ctx).Model(&store.Agent{}).
		Where("status = ?", store.StatusActive).
		Where("EXISTS (SELECT 1 FROM attestation_results r WHERE r.agent_id = agents.id AND r.status = ? AND r.expires_at > ?)",
			store.AttestationAffirming, utc(now)).
		Count(&n).Error
	return n, wrapErr("count attested agents", err)
}

// CountStaleCredentials implements store.Counter.
func (s *Store) CountStaleCredentials(ctx context.Context, createdBefore time.Time) (int64, error) {
	var n int64
	err := s.r.WithContext(ctx).Model(&store.Agent{}).
		Where("status = ?", store.StatusActive).
		Where("NOT EXISTS (SELECT 1 FROM credentials c WHERE c.agent_id = agents.id AND c.state = ? AND c.created_at >= ?)",
			store.CredentialActive, utc(createdBefore)).
		Count(&n).Error
	return n, wrapErr("count stale credentials", err)
}

// RecentAudit implements store.Counter.
func (s *Store) RecentAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	q := s.r.WithContext(ctx).Model(&store.AuditEvent{})
	if f.AgentID != "" {
		q = q.Where("agent_id = ?", f.AgentID)
	}
	if f.Type != "" {
		q = q.Where("type = ?", f.Type)
	}
	if f.Outcome != "" {
		q = q.Where("outcome = ?", f.Outcome)
	}
	if !f.Since.IsZero() {
		q = q.Where(`"time" >= ?`, utc(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where(`"time" < ?`, utc(f.Until))
	}
	if f.AfterSeq > 0 {
		q = q.Where("seq < ?", f.AfterSeq)
	}
	out := []store.AuditEvent{}
	if err := q.Order("seq DESC").Limit(limit(f.Limit)).Find(&out).Error; err != nil {
		return nil, wrapErr("recent audit events", err)
	}
	for i := range out {
		out[i].Time = utc(out[i].Time)
	}
	return out, nil
}
