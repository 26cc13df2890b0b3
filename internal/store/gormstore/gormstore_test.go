package gormstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

// dialects opens a migrated store of each kind; PostgreSQL skips (or fails, with
// LANYARD_REQUIRE_SERVICES=1) when the server is down.
var dialects = []struct {
	name string
	open func(testing.TB) *gormstore.Store
}{
	{gormstore.DialectSQLite, storetest.OpenSQLite},
	{gormstore.DialectPostgres, storetest.OpenPostgres},
}

func TestConformance(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return d.open(t) })
		})
	}
}

func TestDialect(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			if got := d.open(t).Dialect(); got != d.name {
				t.Errorf("Dialect() = %q, want %q", got, d.name)
			}
		})
	}
}

// TestMigrateTwice checks a second Migrate, including a concurrent one, changes nothing.
func TestMigrateTwice(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s := d.open(t) // migrated once
			if err := s.PutSetting(t.Context(), "k", []byte("v")); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					if err := s.Migrate(t.Context()); err != nil {
						t.Errorf("Migrate again: %v", err)
					}
				})
			}
			wg.Wait()
			if got, err := s.GetSetting(t.Context(), "k"); err != nil || string(got) != "v" {
				t.Errorf("data after re-migrating: %q, %v", got, err)
			}
			if h, err := s.AuditHead(t.Context()); err != nil || h.Seq != 0 {
				t.Errorf("audit head after re-migrating: %+v, %v", h, err)
			}
		})
	}
}

// TestColumnNames checks that every table the migrations create has exactly the
// columns gorm's default naming gives the fields of its record, on both dialects.
func TestColumnNames(t *testing.T) {
	// The names that are easy to get wrong, spelled out.
	want := map[string]string{
		"SigningKey.PublicJWK":        "public_jwk",
		"SigningKey.KID":              "kid",
		"Credential.SecretHash":       "secret_hash",
		"Credential.JWKS":             "jwks",
		"Agent.MaxTokenTTLSeconds":    "max_token_ttl_seconds",
		"Agent.AttestationTTLSeconds": "attestation_ttl_seconds",
		"Agent.ClientID":              "client_id",
		"Agent.CanIntrospect":         "can_introspect",
		"AuditEvent.PrevHash":         "prev_hash",
		"AuditEvent.RequestID":        "request_id",
		"RevokedToken.JTI":            "jti",
	}
	cache := &sync.Map{}
	parsed := map[string]*schema.Schema{}
	for _, m := range gormstore.Models {
		sch, err := schema.Parse(m, cache, schema.NamingStrategy{})
		if err != nil {
			t.Fatalf("parse %T: %v", m, err)
		}
		parsed[sch.Table] = sch
		for _, f := range sch.Fields {
			key := sch.Name + "." + f.Name
			if col, ok := want[key]; ok {
				if f.DBName != col {
					t.Errorf("%s maps to column %q, want %q", key, f.DBName, col)
				}
				delete(want, key)
			}
		}
	}
	for key := range want {
		t.Errorf("field %s not found in the models", key)
	}

	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t).DB().(*gorm.DB)
			for table, sch := range parsed {
				cols, err := db.Migrator().ColumnTypes(table)
				if err != nil {
					t.Errorf("table %s: %v", table, err)
					continue
				}
				var have, fields []string
				for _, c := range cols {
					have = append(have, c.Name())
				}
				for _, f := range sch.Fields {
					if f.DBName != "" {
						fields = append(fields, f.DBName)
					}
				}
				slices.Sort(have)
				slices.Sort(fields)
				if !slices.Equal(have, fields) {
					t.Errorf("table %s has columns %v; record %s maps to %v", table, have, sch.Name, fields)
				}
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	for _, dsn := range []string{
		"",
		":memory:",
		"file::memory:?cache=shared",
		"file:x.db?mode=memory",
		storetest.SQLitePath(t) + "?_txlock=deferred",
		storetest.SQLitePath(t) + "?_time_format=sqlite",
	} {
		if s, err := gormstore.Open(context.Background(), dsn, nil); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", dsn)
		}
	}
}

// TestAuditAppendOnly checks the database itself refuses to rewrite the audit log.
func TestAuditAppendOnly(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			s := d.open(t)
			err := s.AppendAudit(t.Context(), func(h store.AuditHead) ([]store.AuditEvent, error) {
				return []store.AuditEvent{{Seq: 1, ID: "evt_1", Type: "t", Hash: []byte("h")}}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			db := s.DB().(*gorm.DB)
			for _, stmt := range []string{
				"UPDATE audit_events SET reason = 'edited'",
				"DELETE FROM audit_events",
			} {
				err := db.Exec(stmt).Error
				if err == nil || !strings.Contains(err.Error(), "append-only") {
					t.Errorf("%s: got %v, want the append-only refusal", stmt, err)
				}
			}
		})
	}
}

func TestAuditRefusesSubMicrosecondTime(t *testing.T) {
	s := storetest.OpenSQLite(t)
	err := s.AppendAudit(t.Context(), func(h store.AuditHead) ([]store.AuditEvent, error) {
		e := store.AuditEvent{Seq: 1, ID: "evt_1", Type: "t", Hash: []byte("h")}
		e.Time = e.Time.Add(1) // one nanosecond
		return []store.AuditEvent{e}, nil
	})
	if err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("AppendAudit with a nanosecond time: %v, want a refusal", err)
	}
}
