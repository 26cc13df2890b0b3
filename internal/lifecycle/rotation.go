package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/secrets"
	"github.com/lanyardhq/lanyard/internal/store"
)

// Rotation of managed agent credentials
//
// A rotation is a store.Rotation row whose Step is persisted after every step, so that
// it can be resumed — by this process after a failure, or by another replica after a
// crash — and every step is idempotent:
//
//	started  the row exists, naming the new credential id (NewRef) and the old one.
//	         → generate the secret and write it as a new version at the agent's path;
//	           the data carries rotation_id, so a version written just before a crash is
//	           found and adopted instead of writing another.
//	stored   the new version is recorded in the row.
//	         → read it back, derive the hash or public key, and in one transaction
//	           insert it as the active credential and mark the old one retiring until
//	           now+grace (store.RotateCredential). Recording it as "next" and
//	           activating it are one step for agent credentials: both credentials are
//	           accepted from that commit on, and the agent switches by reading the
//	           latest version, so a separate "next" state would change nothing.
//	active   the grace period runs; both credentials work.
//	         → after GraceUntil, delete the retiring credential.
//	done     finished.
//
// Hook points, in order (Options.Hook): "credential.before_store",
// "credential.after_store" (written, not yet recorded), "credential.before_activate",
// "credential.after_activate" (committed, row not yet updated),
// "credential.before_retire".

// Rotation causes.
const (
	CauseScheduled = "scheduled"
	CauseManual    = "manual"
)

// ErrNoRotationStore reports a store without rotation records.
var ErrNoRotationStore = errors.New("lifecycle: the store does not record rotations")

func (s *Service) hook(ctx context.Context, point string) error {
	if s.opts.Hook == nil {
		return nil
	}
	if err := s.opts.Hook(ctx, point); err != nil {
		return fmt.Errorf("lifecycle: stopped at %s: %w", point, err)
	}
	return nil
}

// StartCredentialRotation begins rotating the agent's managed credential (or returns
// the rotation already in progress, which the caller should advance). A rotation in
// its grace period is superseded: its old credential keeps its own grace end. grace < 0
// takes the service default.
func (s *Service) StartCredentialRotation(ctx context.Context, actor, id, cause string, grace time.Duration) (*store.Rotation, error) {
	return s.startCredentialRotation(ctx, actor, id, cause, "", grace)
}

// startCredentialRotation is StartCredentialRotation with the reason the audit event
// records (an operator's, for a manual rotation).
func (s *Service) startCredentialRotation(ctx context.Context, actor, id, cause, reason string, grace time.Duration) (*store.Rotation, error) {
	rs, ok := s.rotations()
	if !ok || s.opts.Secrets == nil {
		return nil, ErrNoRotationStore
	}
	a, err := s.st.GetAgent(ctx, id)
	if err != nil {
		return nil, s.wrap("rotate credentials of", id, err)
	}
	if a.Status == store.StatusRevoked || a.Status == store.StatusDecommissioned {
		return nil, &TransitionError{Action: "rotate credentials of", From: a.Status}
	}
	creds, err := s.st.ListCredentials(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: credentials of %s: %w", id, err)
	}
	var old *store.Credential
	for i := range creds {
		if creds[i].State == store.CredentialActive {
			old = &creds[i]
			break
		}
	}
	if old != nil && !isManaged(old) {
		return nil, &ValidationError{Fields: []FieldError{{Field: "jwks", Detail: "the agent registered its own public keys: rotate by sending the new jwks"}}}
	}
	now := s.opts.Now().UTC()
	r := &store.Rotation{
		ID: newID("rot_"), Kind: store.RotationAgentCredential, Subject: id, Step: store.StepStarted,
		Cause: cause, Actor: actor, NewRef: newID("crd_"),
		SecretPath: AgentSecretPath(a.Namespace, a.Name), GraceSeconds: int64(s.graceOr(grace) / time.Second),
		CreatedAt: now, UpdatedAt: now,
	}
	if old != nil {
		r.OldRef = old.ID
	}
	for range 2 {
		err = rs.CreateRotation(ctx, r)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
		open, oerr := s.openRotation(ctx, id)
		if oerr != nil {
			return nil, oerr
		}
		if open == nil {
			continue // finished meanwhile
		}
		if open.Step != store.StepActive {
			return open, nil // in progress: resume it
		}
		if _, err := rs.UpdateRotation(ctx, open.ID, func(o *store.Rotation) error {
			o.Step, o.FinishedAt = store.StepSuperseded, &now
			return nil
		}); err != nil {
			return nil, fmt.Errorf("lifecycle: supersede rotation %s: %w", open.ID, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lifecycle: start rotation of %s: %w", id, err)
	}
	if err := s.record(ctx, actor, a, audit.Event{Type: "credential.rotation_started", Reason: reason, Data: map[string]any{
		"rotation_id": r.ID, "cause": cause, "new_credential_id": r.NewRef, "old_credential_id": r.OldRef,
	}}); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *Service) openRotation(ctx context.Context, agentID string) (*store.Rotation, error) {
	rs, _ := s.rotations()
	list, err := rs.ListRotations(ctx, store.RotationAgentCredential, agentID, 5)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].FinishedAt == nil {
			return &list[i], nil
		}
	}
	return nil, nil
}

// AdvanceCredentialRotation runs r's next steps as far as they can go now and returns
// the updated rotation, and the newly generated client secret or private key PEM if
// this call generated one (for a manual rotation's response). On error the rotation
// stays at the last persisted step; calling again resumes it.
func (s *Service) AdvanceCredentialRotation(ctx context.Context, r *store.Rotation) (_ *store.Rotation, shown string, _ error) {
	rs, ok := s.rotations()
	if !ok || s.opts.Secrets == nil {
		return r, "", ErrNoRotationStore
	}
	for {
		a, err := s.st.GetAgent(ctx, r.Subject)
		if err != nil {
			return r, shown, fmt.Errorf("lifecycle: rotation %s: %w", r.ID, err)
		}
		if a.Status == store.StatusDecommissioned || a.Status == store.StatusRevoked {
			now := s.opts.Now().UTC()
			r, err = rs.UpdateRotation(ctx, r.ID, func(o *store.Rotation) error {
				o.Step, o.FinishedAt, o.LastError = store.StepFailed, &now, "agent is "+a.Status
				return nil
			})
			return r, shown, err
		}
		switch r.Step {
		case store.StepStarted:
			version, generated, err := s.stageSecret(ctx, a, r)
			if err != nil {
				return r, shown, err
			}
			shown = generated
			if err := s.hook(ctx, "credential.after_store"); err != nil {
				return r, shown, err
			}
			if r, err = rs.UpdateRotation(ctx, r.ID, func(o *store.Rotation) error {
				if o.Step != store.StepStarted {
					return fmt.Errorf("lifecycle: rotation %s moved to %s meanwhile", o.ID, o.Step)
				}
				o.Step, o.SecretVersion, o.Attempts, o.LastError = store.StepStored, version, 0, ""
				return nil
			}); err != nil {
				return r, shown, fmt.Errorf("lifecycle: record stored secret: %w", err)
			}
		case store.StepStored:
			if err := s.hook(ctx, "credential.before_activate"); err != nil {
				return r, shown, err
			}
			until, err := s.activateStaged(ctx, a, r)
			if err != nil {
				return r, shown, err
			}
			if err := s.hook(ctx, "credential.after_activate"); err != nil {
				return r, shown, err
			}
			if r, err = rs.UpdateRotation(ctx, r.ID, func(o *store.Rotation) error {
				o.Step, o.GraceUntil, o.NotBefore, o.Attempts, o.LastError = store.StepActive, &until, &until, 0, ""
				return nil
			}); err != nil {
				return r, shown, fmt.Errorf("lifecycle: record activation: %w", err)
			}
			if err := s.record(ctx, orSystem(r.Actor), a, audit.Event{Type: "credential.rotated", Data: map[string]any{
				"rotation_id": r.ID, "cause": r.Cause, "credential_id": r.NewRef, "previous_credential_id": r.OldRef,
				"type": a.CredentialType, "grace_until": until.Format(time.RFC3339),
				"secret_path": r.SecretPath, "secret_version": r.SecretVersion,
			}}); err != nil {
				return r, shown, err
			}
		case store.StepActive:
			now := s.opts.Now().UTC()
			if r.GraceUntil != nil && now.Before(*r.GraceUntil) {
				return r, shown, nil // the grace period runs
			}
			if err := s.hook(ctx, "credential.before_retire"); err != nil {
				return r, shown, err
			}
			n, err := rs.DeleteExpiredCredentials(ctx, a.ID, now)
			if err != nil {
				return r, shown, fmt.Errorf("lifecycle: retire credential %s: %w", r.OldRef, err)
			}
			if r, err = rs.UpdateRotation(ctx, r.ID, func(o *store.Rotation) error {
				o.Step, o.FinishedAt, o.NotBefore = store.StepDone, &now, nil
				return nil
			}); err != nil {
				return r, shown, err
			}
			if n > 0 {
				s.changed(a)
			}
			if err := s.record(ctx, orSystem(r.Actor), a, audit.Event{Type: "credential.retired", Data: map[string]any{
				"rotation_id": r.ID, "credential_id": r.OldRef,
			}}); err != nil {
				return r, shown, err
			}
			return r, shown, nil
		default:
			return r, shown, nil
		}
	}
}

func orSystem(actor string) string {
	if actor == "" {
		return "system"
	}
	return actor
}

// stageSecret writes the new credential's secret as a new version at the agent's path,
// or adopts the version this rotation wrote before an interruption.
func (s *Service) stageSecret(ctx context.Context, a *store.Agent, r *store.Rotation) (version int, shown string, err error) {
	latest, err := s.opts.Secrets.Get(ctx, r.SecretPath, 0)
	switch {
	case err == nil && latest.Data[dataRotation] == r.ID:
		return latest.Version, "", nil
	case err != nil && !errors.Is(err, secrets.ErrNotFound):
		return 0, "", &UnavailableError{Err: err}
	}
	if err := s.hook(ctx, "credential.before_store"); err != nil {
		return 0, "", err
	}
	data, err := newMaterial(a, a.CredentialType, r.NewRef, r.ID)
	if err != nil {
		return 0, "", err
	}
	v, err := s.opts.Secrets.Put(ctx, r.SecretPath, data)
	if err != nil {
		return 0, "", &UnavailableError{Err: err}
	}
	shown = data[dataSecret]
	if shown == "" {
		shown = data[dataKeyPEM]
	}
	return v, shown, nil
}

// activateStaged makes the stored version the agent's active credential, unless an
// interrupted run already did, and returns the end of the old credential's grace.
func (s *Service) activateStaged(ctx context.Context, a *store.Agent, r *store.Rotation) (time.Time, error) {
	creds, err := s.st.ListCredentials(ctx, a.ID)
	if err != nil {
		return time.Time{}, err
	}
	now := s.opts.Now().UTC()
	until := now.Add(time.Duration(r.GraceSeconds) * time.Second)
	if i := slices.IndexFunc(creds, func(c store.Credential) bool { return c.ID == r.NewRef }); i >= 0 {
		// Committed before an interruption: the old credential's grace end is recorded.
		for _, c := range creds {
			if c.ID == r.OldRef && c.ExpiresAt != nil {
				return *c.ExpiresAt, nil
			}
		}
		return until, nil
	}
	sec, err := s.opts.Secrets.Get(ctx, r.SecretPath, r.SecretVersion)
	if err != nil {
		return time.Time{}, &UnavailableError{Err: err}
	}
	cred := &store.Credential{ID: r.NewRef, AgentID: a.ID, Type: a.CredentialType, State: store.CredentialActive,
		SecretPath: r.SecretPath, SecretVersion: r.SecretVersion, CreatedAt: now}
	if err := s.fillCredential(sec.Data, cred); err != nil {
		return time.Time{}, err
	}
	if err := s.st.RotateCredential(ctx, a.ID, cred, until); err != nil {
		return time.Time{}, fmt.Errorf("lifecycle: activate credential %s: %w", cred.ID, err)
	}
	s.changed(a)
	return until, nil
}

// rotateManaged is RotateCredential for an agent whose credential Lanyard holds: it
// runs the rotation state machine up to activation.
func (s *Service) rotateManaged(ctx context.Context, actor, id, reason string, grace time.Duration) (*Rotated, error) {
	r, err := s.startCredentialRotation(ctx, actor, id, CauseManual, reason, grace)
	if err != nil {
		return nil, err
	}
	r, shown, err := s.AdvanceCredentialRotation(ctx, r)
	if err != nil {
		return nil, err
	}
	detail, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &Rotated{Agent: detail, RotationID: r.ID}
	if r.GraceUntil != nil {
		out.GraceUntil = *r.GraceUntil
	}
	if detail.CredentialType == store.CredentialClientSecret {
		out.ClientSecret = shown
	} else {
		out.PrivateKeyPEM = shown
	}
	return out, nil
}

// hasManagedCredential reports whether the agent's active credential is one Lanyard
// holds: every client secret (a secret registered before the secrets backend held them
// moves there at its first rotation), and generated keys.
func (s *Service) hasManagedCredential(ctx context.Context, id, typ string) (bool, error) {
	if typ == store.CredentialClientSecret {
		return true, nil
	}
	creds, err := s.st.ListCredentials(ctx, id)
	if err != nil {
		return false, fmt.Errorf("lifecycle: credentials of %s: %w", id, err)
	}
	for _, c := range creds {
		if c.State == store.CredentialActive && isManaged(&c) {
			return true, nil
		}
	}
	return false, nil
}
