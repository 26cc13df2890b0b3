package gormstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/lanyardhq/lanyard/internal/store"
)

// forUpdate locks the selected rows until the transaction ends. It is a row lock on
// PostgreSQL; the SQLite dialector drops it, the single write transaction being the lock.
var forUpdate = clause.Locking{Strength: clause.LockingStrengthUpdate}

// CreateAgent implements store.Agents. It inserts a and, when c is not nil, c in one
// transaction; c.AgentID is set to a.ID when empty and must equal it otherwise.
// a.CreatedAt defaults to now and a.UpdatedAt to a.CreatedAt.
func (s *Store) CreateAgent(ctx context.Context, a *store.Agent, c *store.Credential) error {
	const op = "create agent"
	switch {
	case a == nil:
		return fmt.Errorf("gormstore: %s: nil agent", op)
	case a.ID == "" || a.ClientID == "":
		return fmt.Errorf("gormstore: %s: agent ID and client ID are required", op)
	}
	if c != nil {
		if err := prepareCredential(c, a.ID); err != nil {
			return fmt.Errorf("gormstore: %s: %w", op, err)
		}
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now()
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.CreatedAt
	}
	normAgent(a)

	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(a).Error; err != nil {
			return err
		}
		if c == nil {
			return nil
		}
		return tx.Create(c).Error
	})
	return wrapErr(op, err)
}

// GetAgent implements store.Agents.
func (s *Store) GetAgent(ctx context.Context, id string) (*store.Agent, error) {
	var a store.Agent
	if err := s.r.WithContext(ctx).Where("id = ?", id).Take(&a).Error; err != nil {
		return nil, wrapErr("get agent", err)
	}
	return &a, nil
}

// GetAgentByClientID implements store.Agents with one query on the client_id unique index.
func (s *Store) GetAgentByClientID(ctx context.Context, clientID string) (*store.Agent, error) {
	var a store.Agent
	if err := s.r.WithContext(ctx).Where("client_id = ?", clientID).Take(&a).Error; err != nil {
		return nil, wrapErr("get agent by client id", err)
	}
	return &a, nil
}

// ListAgents implements store.Agents.
func (s *Store) ListAgents(ctx context.Context, f store.AgentFilter) ([]store.Agent, error) {
	q := s.r.WithContext(ctx).Model(&store.Agent{})
	if f.Namespace != "" {
		q = q.Where("namespace = ?", f.Namespace)
	}
	if f.Owner != "" {
		q = q.Where("owner = ?", f.Owner)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.After != "" {
		q = q.Where("id > ?", f.After)
	}
	if f.RiskLevel != "" {
		q = q.Where("risk_level = ?", f.RiskLevel)
	}
	if f.NameContains != "" {
		q = q.Where(`LOWER(name) LIKE ? ESCAPE '\'`, "%"+likeEscaper.Replace(strings.ToLower(f.NameContains))+"%")
	}
	if f.Namespaces != nil {
		if len(f.Namespaces) == 0 {
			return []store.Agent{}, nil
		}
		q = q.Where("namespace IN ?", f.Namespaces)
	}
	out := []store.Agent{}
	if err := q.Order("id").Limit(limit(f.Limit)).Find(&out).Error; err != nil {
		return nil, wrapErr("list agents", err)
	}
	return out, nil
}

// UpdateAgent implements store.Agents. fn receives a copy of the stored agent; the
// Store then restores ID and CreatedAt (they are immutable), sets Generation to the
// stored one plus one and UpdatedAt to now, and writes every other field back.
// Changing the namespace and name or the client ID to one in use gives ErrConflict.
func (s *Store) UpdateAgent(ctx context.Context, id string, fn func(a *store.Agent) error) (*store.Agent, error) {
	const op = "update agent"
	var (
		out   store.Agent
		fnErr error
	)
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var cur store.Agent
		if err := tx.Clauses(forUpdate).Where("id = ?", id).Take(&cur).Error; err != nil {
			return err
		}
		next := cur
		if err := fn(&next); err != nil {
			fnErr = err
			return err
		}
		next.ID, next.CreatedAt = cur.ID, cur.CreatedAt
		next.Generation = cur.Generation + 1
		next.UpdatedAt = now()
		normAgent(&next)
		res := tx.Model(&store.Agent{}).
			Where("id = ? AND generation = ?", cur.ID, cur.Generation).
			Select("*").Omit("id", "created_at").
			UpdateColumns(&next)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return errConcurrentUpdate
		}
		out = next
		return nil
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, wrapErr(op, err)
	}
	return &out, nil
}

// CountAgentsByStatus implements store.Agents. Statuses without agents are absent.
func (s *Store) CountAgentsByStatus(ctx context.Context) (map[string]int64, error) {
	var rows []struct {
		Status string
		N      int64
	}
	err := s.r.WithContext(ctx).Model(&store.Agent{}).
		Select("status, count(*) AS n").Group("status").Scan(&rows).Error
	if err != nil {
		return nil, wrapErr("count agents by status", err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// ListCredentials implements store.Credentials. An unknown agent has no credentials:
// the result is empty, not ErrNotFound.
func (s *Store) ListCredentials(ctx context.Context, agentID string) ([]store.Credential, error) {
	out := []store.Credential{}
	err := s.r.WithContext(ctx).Where("agent_id = ?", agentID).
		Order("created_at DESC, id DESC").Find(&out).Error
	if err != nil {
		return nil, wrapErr("list credentials", err)
	}
	return out, nil
}

// RotateCredential implements store.Credentials. Federated credentials are not
// rotated: they are added and removed one by one. next.AgentID is set to agentID when
// empty and must equal it otherwise; next.State is set to store.CredentialActive.
// ErrNotFound if the agent does not exist. The agent's UpdatedAt moves with its
// Generation.
func (s *Store) RotateCredential(ctx context.Context, agentID string, next *store.Credential, graceUntil time.Time) error {
	const op = "rotate credential"
	if next == nil {
		return fmt.Errorf("gormstore: %s: nil credential", op)
	}
	if err := prepareCredential(next, agentID); err != nil {
		return fmt.Errorf("gormstore: %s: %w", op, err)
	}
	next.State = store.CredentialActive
	grace := utc(graceUntil)
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Bumping first takes the agent's row lock, so rotations of one agent serialise.
		if err := bumpGeneration(tx, agentID); err != nil {
			return err
		}
		err := tx.Model(&store.Credential{}).
			Where("agent_id = ? AND state = ? AND type <> ?", agentID, store.CredentialActive, store.CredentialFederated).
			UpdateColumns(map[string]any{"state": store.CredentialRetiring, "expires_at": grace}).Error
		if err != nil {
			return err
		}
		return tx.Create(next).Error
	})
	return wrapErr(op, err)
}

// DeleteCredentials implements store.Credentials. ErrNotFound if the agent does not exist.
func (s *Store) DeleteCredentials(ctx context.Context, agentID string) error {
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := bumpGeneration(tx, agentID); err != nil {
			return err
		}
		return tx.Where("agent_id = ?", agentID).Delete(&store.Credential{}).Error
	})
	return wrapErr("delete credentials", err)
}

// normAgent normalises the agent's times as the Store writes them.
func normAgent(a *store.Agent) {
	a.CreatedAt, a.UpdatedAt = utc(a.CreatedAt), utc(a.UpdatedAt)
	a.TokensNotBefore = utcPtr(a.TokensNotBefore)
}

// prepareCredential checks c belongs to agentID and normalises its times.
func prepareCredential(c *store.Credential, agentID string) error {
	if c.ID == "" {
		return errors.New("credential ID is required")
	}
	if c.AgentID == "" {
		c.AgentID = agentID
	} else if c.AgentID != agentID {
		return fmt.Errorf("credential %s belongs to agent %q, not %q", c.ID, c.AgentID, agentID)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now()
	}
	c.CreatedAt, c.ExpiresAt = utc(c.CreatedAt), utcPtr(c.ExpiresAt)
	return nil
}

// bumpGeneration increments the agent's Generation (so caches reload) and sets its
// UpdatedAt; gorm.ErrRecordNotFound if there is no such agent.
func bumpGeneration(tx *gorm.DB, agentID string) error {
	res := tx.Model(&store.Agent{}).Where("id = ?", agentID).UpdateColumns(map[string]any{
		"generation": gorm.Expr("generation + 1"),
		"updated_at": now(),
	})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return gorm.ErrRecordNotFound
	}
	return nil
}

// likeEscaper escapes LIKE's wildcards (the pattern's ESCAPE character is a backslash).
var likeEscaper = strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)
