package audit

// Event types Lanyard records. The list names the common events so that producers and
// consumers (the UI, SIEM rules) agree on spelling; other types are allowed, written
// "<subject>.<past-tense verb>".
const (
	TypeAgentRegistered     = "agent.registered"
	TypeAgentUpdated        = "agent.updated"
	TypeAgentActivated      = "agent.activated"
	TypeAgentSuspended      = "agent.suspended"
	TypeAgentResumed        = "agent.resumed"
	TypeAgentRevoked        = "agent.revoked"
	TypeAgentDecommissioned = "agent.decommissioned"
	TypeCredentialRotated   = "credential.rotated"
	TypeTokenIssued         = "token.issued"
	TypeTokenRefused        = "token.refused"
	TypeTokenRevoked        = "token.revoked"
	TypeSigningKeyCreated   = "signing_key.created"
	TypeSigningKeyRotated   = "signing_key.rotated"
	TypeAdminTokenBootstrap = "admin.token_bootstrapped"
	TypeIntrospectRefused   = "introspection.refused"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// Actors that are not agents. An agent acting for itself is recorded as "agent:<id>".
const (
	ActorAdmin  = "admin"
	ActorSystem = "system"
)

// Event is what a caller records. The Log assigns the ID, time, sequence number and
// hashes when it appends the event to the chain.
type Event struct {
	// Type names what happened (one of the Type constants, or another
	// "<subject>.<verb>" name). Required.
	Type string
	// Actor is who did it: ActorAdmin, ActorSystem or "agent:<id>".
	Actor string
	// AgentID is the agent the event is about, if any.
	AgentID string
	// Namespace is the agent's namespace, if any.
	Namespace string
	// Outcome is OutcomeSuccess or OutcomeFailure.
	Outcome string
	// Reason says why: the refusal's failed check, or the reason an admin gave.
	Reason string
	// RequestID ties the event to the request's log lines.
	RequestID string
	// Data holds event-specific detail. It must encode as JSON; numbers are stored as
	// IEEE 754 doubles (see the package doc). The Log takes ownership of the map: the
	// caller must not modify it, or anything reachable from it, after Record or Enqueue.
	//
	// Data is never written to the process log, so it may hold values an operator's
	// log pipeline should not see; it must still never hold a credential.
	Data map[string]any
}
