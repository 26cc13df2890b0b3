package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lanyardhq/lanyard/internal/attest/measure"
)

func newMeasureCmd() *cobra.Command {
	var (
		model, prompt, tools string
		jsonOut              bool
	)
	cmd := &cobra.Command{
		Use:   "measure [--model PATH] [--prompt FILE] [--tools FILE] [--json]",
		Short: "Compute an agent's measurements (model, prompt and tool-manifest digests)",
		Long: "Compute the digests Lanyard measures an agent by, exactly as the server does:\n\n" +
			"  model_digest          OpenSSF model-signing v1.0 root digest (method files, sha256) of a model directory or file\n" +
			"  prompt_digest         SHA-256 of the system prompt file's bytes, exactly as stored\n" +
			"  tool_manifest_digest  SHA-256 of the RFC 8785 canonical JSON of an MCP tools/list result\n\n" +
			"Only the digests whose flag is given are computed and printed. With --json the output is the " +
			"measurements object to use as an agent's reference measurements. docs/measurements.md shows " +
			"how to reproduce each digest with standard tools.",
		Example: "  lanyard measure --model ./model --prompt system-prompt.txt --tools tools.json --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" && prompt == "" && tools == "" {
				cmd.PrintErrln(cmd.UsageString())
				return errors.New("measure: nothing to measure: give --model, --prompt and/or --tools")
			}
			m, err := measure.Measure(model, prompt, tools)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(m)
			}
			for _, line := range []struct{ key, digest string }{
				{"model_digest:", m.ModelDigest},
				{"prompt_digest:", m.PromptDigest},
				{"tool_manifest_digest:", m.ToolManifestDigest},
			} {
				if line.digest == "" {
					continue
				}
				if _, err := fmt.Fprintf(out, "%-21s %s\n", line.key, line.digest); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model directory or single model file")
	f.StringVar(&prompt, "prompt", "", "file holding the system prompt, byte for byte")
	f.StringVar(&tools, "tools", "", "file holding the tool manifest (an MCP tools/list result: {\"tools\":[...]})")
	f.BoolVar(&jsonOut, "json", false, "print the measurements as JSON")
	return cmd
}
