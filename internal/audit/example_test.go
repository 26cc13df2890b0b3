package audit

import (
	"context"
	"fmt"
	"log/slog"
)

func ExampleLog() {
	st := &memStore{} // in the server: the gormstore.Store
	l := New(st, slog.Default(), Options{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	// An admin action: wait until it is on record.
	err := l.Record(ctx, Event{
		Type: TypeAgentSuspended, Actor: ActorAdmin, AgentID: "agt_1", Namespace: "finance",
		Outcome: OutcomeSuccess, Reason: "incident 42", RequestID: "req-1",
		Data: map[string]any{"from": "active", "to": "suspended"},
	})
	fmt.Println("recorded:", err)

	// The token endpoint: queue and move on.
	err = l.Enqueue(Event{
		Type: TypeTokenRefused, Actor: "agent:agt_1", AgentID: "agt_1", Namespace: "finance",
		Outcome: OutcomeFailure, Reason: "agent is suspended", RequestID: "req-2",
	})
	fmt.Println("enqueued:", err)

	// Shutdown: everything accepted is appended before Run returns.
	cancel()
	fmt.Println("run:", <-done)

	r, err := Verify(context.Background(), st, 0)
	fmt.Println("verified:", r.OK, r.Events, err)
	// Output:
	// recorded: <nil>
	// enqueued: <nil>
	// run: <nil>
	// verified: true 2 <nil>
}
