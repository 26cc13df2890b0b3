package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/audit"
	"github.com/lanyardhq/lanyard/internal/client"
	"github.com/lanyardhq/lanyard/internal/store/gormstore"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the hash-chained audit log",
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditListCmd())
	return cmd
}

// errChainBroken is returned (wrapped with where and why) when verification finds a
// break, so the command exits non-zero.
var errChainBroken = errors.New("audit chain is broken")

// verifyResult is what both verification modes produce, in the API's JSON shape.
type verifyResult struct {
	OK     bool         `json:"ok"`
	Events int64        `json:"events"`
	Head   string       `json:"head,omitempty"`
	Broken *verifyBreak `json:"broken,omitempty"`
}

// verifyBreak is the first place the chain fails to verify.
type verifyBreak struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// report prints the result and returns errChainBroken (wrapped) when the chain is broken.
func (r *verifyResult) report(w io.Writer, raw json.RawMessage, asJSON bool) error {
	if asJSON {
		if err := printJSON(w, raw, r); err != nil {
			return err
		}
	}
	if !r.OK {
		if r.Broken == nil {
			return fmt.Errorf("%w (the verifier named no location; %d events verified)", errChainBroken, r.Events)
		}
		why := clean(r.Broken.Reason)
		if r.Broken.Detail != "" {
			why += ": " + clean(r.Broken.Detail)
		}
		return fmt.Errorf("%w at seq %d: %s (%d events before it verified)", errChainBroken, r.Broken.Seq, why, r.Events)
	}
	if !asJSON {
		head := r.Head
		if head == "" {
			head = "(empty log)"
		}
		fmt.Fprintf(w, "audit chain OK: %d events verified, head %s\n", r.Events, clean(head))
	}
	return nil
}

func newAuditVerifyCmd() *cobra.Command {
	var (
		o                  apiOptions
		databaseURL, dataD string
	)
	cmd := &cobra.Command{
		Use:   "verify [--database-url URL | --data-dir DIR]",
		Short: "Verify the audit chain; exits 1 if it is broken",
		Long: "Verify the whole audit hash chain, from the first event to the stored head.\n\n" +
			"By default the server does it (GET /v1/audit/verify, admin token needed). With --database-url " +
			"(postgres://… or a SQLite file) or --data-dir (SQLite file <dir>/lanyard.db) this command reads " +
			"the database itself, which works while the server is down and does not trust a running server. " +
			"It exits 1 naming the first broken sequence number and why when the chain does not verify.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if databaseURL != "" || cmd.Flags().Changed("data-dir") {
				if o.url != "" || o.adminToken != "" {
					return errors.New("--url/--admin-token ask the server; --database-url/--data-dir read the database: choose one")
				}
				dsn := databaseURL
				if dsn == "" {
					dsn = filepath.Join(dataD, "lanyard.db")
				}
				r, err := verifyDatabase(cmd, dsn)
				if err != nil {
					return err
				}
				return r.report(out, nil, o.json)
			}
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			v, err := c.VerifyAudit(cmd.Context())
			if err != nil {
				return fmt.Errorf("verify audit chain: %w", err)
			}
			r := &verifyResult{OK: v.OK, Events: v.Events, Head: v.Head}
			if v.Broken != nil {
				r.Broken = &verifyBreak{Seq: v.Broken.Seq, Reason: v.Broken.Reason, Detail: v.Broken.Detail}
			}
			return r.report(out, v.Raw, o.json)
		},
	}
	o.addFlags(cmd, true)
	cmd.Flags().StringVar(&databaseURL, "database-url", "", "verify directly in this database: postgres://… or a SQLite file path")
	cmd.Flags().StringVar(&dataD, "data-dir", "./data", "verify directly in the SQLite database <data-dir>/lanyard.db")
	cmd.MarkFlagsMutuallyExclusive("database-url", "data-dir")
	return cmd
}

// verifyDatabase opens the database read for verification and runs audit.Verify.
func verifyDatabase(cmd *cobra.Command, dsn string) (*verifyResult, error) {
	isPG := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	if !isPG && !strings.HasPrefix(dsn, "file:") {
		// Opening a SQLite path that does not exist would create an empty database
		// and "verify" zero events; say what is wrong instead.
		if _, err := os.Stat(dsn); err != nil {
			return nil, fmt.Errorf("audit database %s: %w (point --data-dir or --database-url at the server's database)", dsn, err)
		}
	}
	st, err := gormstore.Open(cmd.Context(), dsn, nil)
	if err != nil {
		return nil, fmt.Errorf("open audit database: %w", err)
	}
	defer st.Close()
	rep, err := audit.Verify(cmd.Context(), st, 0)
	if err != nil {
		return nil, fmt.Errorf("verify audit chain: %w", err)
	}
	r := &verifyResult{OK: rep.OK, Events: rep.Events}
	if rep.Head != nil {
		r.Head = hex.EncodeToString(rep.Head)
	}
	if rep.Broken != nil {
		r.Broken = &verifyBreak{Seq: rep.Broken.Seq, Reason: rep.Broken.Reason, Detail: rep.Broken.Detail}
	}
	return r, nil
}

func newAuditListCmd() *cobra.Command {
	var (
		o            apiOptions
		opts         client.ListAuditOptions
		since, until string
		all          bool
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List audit events, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if opts.Since, err = parseTimeFlag("since", since); err != nil {
				return err
			}
			if opts.Until, err = parseTimeFlag("until", until); err != nil {
				return err
			}
			c, err := o.newClient(true)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var events []client.AuditEvent
			next := ""
			if all {
				for e, err := range c.AllAudit(cmd.Context(), opts) {
					if err != nil {
						return fmt.Errorf("list audit events: %w", err)
					}
					events = append(events, e)
				}
				if o.json {
					items := make([]json.RawMessage, len(events))
					for i, e := range events {
						items[i] = e.Raw
					}
					return printJSON(out, nil, map[string]any{"items": items})
				}
			} else {
				page, err := c.ListAudit(cmd.Context(), opts)
				if err != nil {
					return fmt.Errorf("list audit events: %w", err)
				}
				if o.json {
					return printJSON(out, page.Raw, page)
				}
				events, next = page.Items, page.NextCursor
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tOUTCOME\tACTOR\tAGENT\tREASON")
			for _, e := range events {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, fmtTime(e.Time), orDash(e.Type),
					orDash(e.Outcome), orDash(e.Actor), orDash(e.AgentID), orDash(e.Reason))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more events: rerun with --cursor %s, or use --all\n", clean(next))
			}
			return nil
		},
	}
	o.addFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.AgentID, "agent", "", "only events about this agent id")
	f.StringVar(&opts.Type, "type", "", "only events of this type, e.g. token.refused")
	f.StringVar(&opts.Outcome, "outcome", "", "only events with this outcome: success or failure")
	f.StringVar(&since, "since", "", "only events at or after this time (RFC 3339, or a duration ago such as 1h)")
	f.StringVar(&until, "until", "", "only events before this time (RFC 3339, or a duration ago)")
	f.IntVar(&opts.Limit, "limit", 0, "page size (default: the server's)")
	f.StringVar(&opts.Cursor, "cursor", "", "continue after a previous page")
	f.BoolVar(&all, "all", false, "follow cursors and list every matching event")
	return cmd
}

// parseTimeFlag accepts an RFC 3339 time or a duration meaning that long ago.
func parseTimeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (90m)", name, v)
}
