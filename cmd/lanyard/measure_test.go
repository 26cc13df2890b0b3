package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lanyardhq/lanyard/internal/attest/measure"
)

// measureRun runs `lanyard measure args...` through newMeasureCmd directly, so the
// test does not depend on the command being wired into the root command.
func measureRun(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newMeasureCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

const (
	exampleDir    = "../../internal/attest/measure/testdata/example/"
	exampleModel  = "sha256:76b20c766c5ca1f1083f90729e93b51a4b450322f0da7e929718ebce83bc1ba9"
	examplePrompt = "sha256:5e8bc503408cf8043727cb3bb3f66a9765684f9fa8a5a5befa7d1a5aa44033bf"
	exampleTools  = "sha256:bb708fe21accd16489d2995d656ea42675790948dfc92bd12bb5d309111c1cd1"
)

func TestMeasureCmd(t *testing.T) {
	all := []string{"--model", exampleDir + "model", "--prompt", exampleDir + "prompt.txt", "--tools", exampleDir + "tools.json"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "all three, human",
			args: all,
			want: "model_digest:         " + exampleModel + "\n" +
				"prompt_digest:        " + examplePrompt + "\n" +
				"tool_manifest_digest: " + exampleTools + "\n",
		},
		{
			name: "only the prompt",
			args: []string{"--prompt", exampleDir + "prompt.txt"},
			want: "prompt_digest:        " + examplePrompt + "\n",
		},
		{
			name: "model and tools",
			args: []string{"--tools", exampleDir + "tools.json", "--model", exampleDir + "model/"},
			want: "model_digest:         " + exampleModel + "\n" +
				"tool_manifest_digest: " + exampleTools + "\n",
		},
		{
			name: "all three, JSON",
			args: append([]string{"--json"}, all...),
			want: "{\n  \"model_digest\": \"" + exampleModel + "\",\n  \"prompt_digest\": \"" + examplePrompt +
				"\",\n  \"tool_manifest_digest\": \"" + exampleTools + "\"\n}\n",
		},
		{
			name: "only the tools, JSON",
			args: []string{"--json", "--tools", exampleDir + "tools.json"},
			want: "{\n  \"tool_manifest_digest\": \"" + exampleTools + "\"\n}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := measureRun(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tt.want)
			}
		})
	}
}

func TestMeasureCmdJSONIsMeasurements(t *testing.T) {
	out, _, err := measureRun(t, "--json", "--model", exampleDir+"model", "--prompt", exampleDir+"prompt.txt", "--tools", exampleDir+"tools.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var m measure.Measurements
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	want, err := measure.Measure(exampleDir+"model", exampleDir+"prompt.txt", exampleDir+"tools.json")
	if err != nil {
		t.Fatal(err)
	}
	if m != *want {
		t.Errorf("CLI JSON = %+v, package = %+v", m, *want)
	}
}

func TestMeasureCmdErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no flags", nil, "nothing to measure"},
		{"only --json", []string{"--json"}, "nothing to measure"},
		{"positional argument", []string{"model"}, "unknown command"},
		{"missing prompt", []string{"--prompt", exampleDir + "missing.txt"}, "no such file"},
		{"prompt is the tools flag's job", []string{"--tools", exampleDir + "prompt.txt"}, "tool manifest"},
		{"empty model dir", []string{"--model", t.TempDir()}, "no regular files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := measureRun(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if out != "" {
				t.Errorf("printed %q on error", out)
			}
			if tt.wantErr == "nothing to measure" && !strings.Contains(stderr, "Usage:") {
				t.Errorf("stderr = %q, want the usage", stderr)
			}
		})
	}
}
