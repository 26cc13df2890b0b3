package gormstore

import (
	"bytes"
	"context"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/lanyardhq/lanyard/internal/store"
)

// Rows per INSERT when appending audit events (13 bind parameters each), measured on
// 1000-event appends. SQLite: the driver binds parameters in time quadratic in their
// number, so 1000 rows per statement took ~200 ms and 50 rows ~30 ms. PostgreSQL: flat
// between 50 and 1000 rows (~30 ms); 100 keeps the number of distinct statement shapes
// (one per remainder size) well inside pgx's per-connection statement cache of 512.
const (
	sqliteAuditBatch   = 50
	postgresAuditBatch = 100
)

// auditHead is the single row (id 1) of the audit_head table.
type auditHead struct {
	ID   int `gorm:"primaryKey"`
	Seq  int64
	Hash []byte
}

func (auditHead) TableName() string { return "audit_head" }

// AppendAudit implements store.AuditLog. In one transaction it locks the head row
// (SELECT … FOR UPDATE on PostgreSQL; SQLite's single write transaction serialises),
// calls build, checks that the events continue the head, inserts them and moves the
// head to the last one.
//
// The events must be numbered head.Seq+1, head.Seq+2, … with each PrevHash equal to the
// previous event's Hash (the first one's to head.Hash, unless the log is empty: the
// genesis PrevHash is the audit package's choice), carry a Hash, and have times at
// microsecond resolution (a finer time could not be stored as it was hashed). Anything
// else is refused and nothing changes. An error from build is returned unchanged;
// build returning no events is a no-op.
func (s *Store) AppendAudit(ctx context.Context, build func(head store.AuditHead) ([]store.AuditEvent, error)) error {
	const op = "append audit"
	var buildErr error
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var h auditHead
		if err := tx.Clauses(forUpdate).Where("id = 1").Take(&h).Error; err != nil {
			return fmt.Errorf("read head: %w", err)
		}
		head := store.AuditHead{Seq: h.Seq, Hash: h.Hash}
		events, err := build(head)
		if err != nil {
			buildErr = err
			return err
		}
		if len(events) == 0 {
			return nil
		}
		rows, err := chainRows(head, events)
		if err != nil {
			return err
		}
		if err := tx.CreateInBatches(rows, s.auditBatch).Error; err != nil {
			return err
		}
		last := rows[len(rows)-1]
		res := tx.Model(&auditHead{}).Where("id = 1 AND seq = ?", head.Seq).
			UpdateColumns(map[string]any{"seq": last.Seq, "hash": last.Hash})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return errConcurrentUpdate
		}
		return nil
	})
	if buildErr != nil {
		return buildErr
	}
	return wrapErr(op, err)
}

// chainRows checks that events continue head and returns a copy with UTC times.
func chainRows(head store.AuditHead, events []store.AuditEvent) ([]store.AuditEvent, error) {
	rows := make([]store.AuditEvent, len(events))
	prev := head.Hash
	for i, e := range events {
		if want := head.Seq + 1 + int64(i); e.Seq != want {
			return nil, fmt.Errorf("event %d has seq %d, want %d", i, e.Seq, want)
		}
		if len(e.Hash) == 0 {
			return nil, fmt.Errorf("event seq %d has no hash", e.Seq)
		}
		if (i > 0 || head.Seq > 0) && !bytes.Equal(e.PrevHash, prev) {
			return nil, fmt.Errorf("event seq %d: prev hash does not match the chain", e.Seq)
		}
		if e.Time.Nanosecond()%1000 != 0 {
			return nil, fmt.Errorf("event seq %d: time has sub-microsecond precision, which the database would truncate after hashing", e.Seq)
		}
		e.Time = e.Time.UTC()
		rows[i] = e
		prev = e.Hash
	}
	return rows, nil
}

// ListAudit implements store.AuditLog. Since is inclusive and Until exclusive: the
// events with Since <= Time < Until.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
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
	// "time" is a keyword in PostgreSQL: let gorm quote the column.
	col := clause.Column{Name: "time"}
	if !f.Since.IsZero() {
		q = q.Where(clause.Gte{Column: col, Value: f.Since.UTC()})
	}
	if !f.Until.IsZero() {
		q = q.Where(clause.Lt{Column: col, Value: f.Until.UTC()})
	}
	if f.AfterSeq > 0 {
		q = q.Where("seq > ?", f.AfterSeq)
	}
	out := []store.AuditEvent{}
	if err := q.Order("seq").Limit(limit(f.Limit)).Find(&out).Error; err != nil {
		return nil, wrapErr("list audit", err)
	}
	return out, nil
}

// AuditHead implements store.AuditLog.
func (s *Store) AuditHead(ctx context.Context) (store.AuditHead, error) {
	var h auditHead
	if err := s.r.WithContext(ctx).Where("id = 1").Take(&h).Error; err != nil {
		return store.AuditHead{}, wrapErr("audit head", err)
	}
	return store.AuditHead{Seq: h.Seq, Hash: h.Hash}, nil
}
