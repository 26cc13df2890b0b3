package gormstore

import (
	"time"

	"github.com/lanyardhq/lanyard/internal/store"
)

// Models lists, for the schema test, every record the Store maps to a table.
var Models = []any{
	&store.Agent{},
	&store.Credential{},
	&store.SigningKey{},
	&store.AuditEvent{},
	&auditHead{},
	&store.RevokedToken{},
	&setting{},
	&store.AttestationChallenge{},
	&store.AttestationResult{},
	&store.TPMCounters{},
	&store.TPMEnrolment{},
	&store.PendingTPMEnrolment{},
	&store.Rotation{},
	&store.RotationPolicy{},
	&lease{},
	&secretDestroy{},
	&store.FederationIssuer{},
	&store.UISession{},
}

// DB exposes the writer's gorm handle to the tests.
func (s *Store) DB() any { return s.w }

// BackendPID is the process id of the feed's listening backend, 0 when not connected.
func (f *ChangeFeed) BackendPID() uint32 { return f.pid.Load() }

// ParseChange exposes the payload parser to the tests.
var ParseChange = parseChange

// SetPing shortens the feed's idle ping; call it before Run.
func (f *ChangeFeed) SetPing(idle, timeout time.Duration) { f.pingIdle, f.pingTimeout = idle, timeout }
