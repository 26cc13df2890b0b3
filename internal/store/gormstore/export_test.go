package gormstore

import "github.com/lanyardhq/lanyard/internal/store"

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
