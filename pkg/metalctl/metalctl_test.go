package metalctl_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/metalctl"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const seed = "testdata/seed.yaml"

// env is a metal-api and metalctl pointed at it through the environment.
type env struct {
	t     *testing.T
	api   *clienttest.API
	vars  map[string]string
	stdin string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	api := clienttest.Start(t)
	return &env{t: t, api: api, vars: map[string]string{metalctl.EnvURL: api.URL, metalctl.EnvToken: clienttest.AdminToken}}
}

// run executes a metalctl command line.
func (e *env) run(args ...string) (stdout, stderr string, err error) {
	e.t.Helper()
	var out, errb bytes.Buffer
	cfg := metalctl.Config{
		Stdin: strings.NewReader(e.stdin), Stdout: &out, Stderr: &errb, Version: "test",
		Getenv:     func(k string) string { return e.vars[k] },
		ConfigFile: filepath.Join(e.t.TempDir(), "absent.yaml"),
	}
	err = metalctl.Run(e.t.Context(), cfg, args)
	return out.String(), errb.String(), err
}

// ok runs a command line that must succeed and returns its stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, _, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("metalctl %s: %s", strings.Join(args, " "), metalctl.Message(err))
	}
	return out
}

// fails runs a command line that must fail with a message containing each of want.
func (e *env) fails(want []string, args ...string) {
	e.t.Helper()
	out, _, err := e.run(args...)
	if err == nil {
		e.t.Fatalf("metalctl %s succeeded, want an error; output:\n%s", strings.Join(args, " "), out)
	}
	msg := metalctl.Message(err)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			e.t.Errorf("metalctl %s: error %q does not contain %q", strings.Join(args, " "), msg, w)
		}
	}
}

// items runs an ls-like command with -o json and returns the ids (or addresses) of the items.
func (e *env) items(args ...string) []string {
	e.t.Helper()
	var got []map[string]any
	out := e.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		e.t.Fatalf("metalctl %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
	ids := []string{}
	for _, o := range got {
		ids = append(ids, o["id"].(string))
	}
	slices.Sort(ids)
	return ids
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestApplyTwice(t *testing.T) {
	e := newEnv(t)
	first := e.ok("apply", "-f", seed)
	second := e.ok("apply", "-f", seed)
	want := []string{"partition p1", "size c1-small", "image debian-12", "filesystemlayout default", "project tenant-a",
		"network tenant-super", "network underlay", "network internet", "sizereservation tenant-a-small", "switch leaf01"}
	for i, verb := range []string{"created", "configured"} {
		out := []string{first, second}[i]
		var lines []string
		for _, w := range want {
			lines = append(lines, w+" "+verb)
		}
		if got := strings.TrimSpace(out); got != strings.Join(lines, "\n") {
			t.Errorf("apply #%d printed\n%s\nwant\n%s", i+1, got, strings.Join(lines, "\n"))
		}
	}
	// The second apply updated each object once, to the same content.
	var p map[string]any
	if err := yaml.Unmarshal([]byte(e.ok("partition", "describe", "p1")), &p); err != nil {
		t.Fatal(err)
	}
	if p["version"] != float64(2) || p["description"] != "rack row 1" || p["created"] == "0001-01-01T00:00:00.000Z" {
		t.Errorf("partition after two applies: %v", p)
	}
	// Per resource apply takes plain objects.
	e.stdin = "id: p1\nname: renamed\n"
	if out := e.ok("partition", "apply", "-f", "-"); out != "partition p1 configured\n" {
		t.Errorf("partition apply printed %q", out)
	}
}

func TestListFormats(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", seed)
	var tables strings.Builder
	for _, tc := range []struct {
		args   []string
		header string
		ids    []string
	}{
		{[]string{"partition", "ls"}, "ID", []string{"p1"}},
		{[]string{"size", "ls"}, "ID", []string{"c1-small"}},
		{[]string{"sizereservation", "ls"}, "ID", []string{"tenant-a-small"}},
		{[]string{"image", "ls"}, "ID", []string{"debian-12"}},
		{[]string{"filesystemlayout", "ls"}, "ID", []string{"default"}},
		{[]string{"project", "ls"}, "ID", []string{"tenant-a"}},
		{[]string{"switch", "ls"}, "ID", []string{"leaf01"}},
		{[]string{"network", "ls"}, "ID", []string{"internet", "tenant-super", "underlay"}},
		{[]string{"token", "ls"}, "ID", nil}, // the configured admin token, whose id is derived from its secret
	} {
		name := strings.Join(tc.args, " ")
		if tc.ids != nil {
			if got := e.items(tc.args...); !slices.Equal(got, tc.ids) {
				t.Errorf("%s -o json: ids %q, want %q", name, got, tc.ids)
			}
		}
		var fromYAML []map[string]any
		if err := yaml.Unmarshal([]byte(e.ok(append(tc.args, "-o", "yaml")...)), &fromYAML); err != nil || len(fromYAML) == 0 {
			t.Errorf("%s -o yaml: %v, %d items", name, err, len(fromYAML))
		}
		for _, format := range []string{"table", "wide"} {
			out := e.ok(append(tc.args, "-o", format)...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if !strings.HasPrefix(lines[0], tc.header+" ") || len(lines) < 2 {
				t.Errorf("%s -o %s:\n%s", name, format, out)
			}
			if tc.ids != nil {
				fmt.Fprintf(&tables, "$ metalctl %s -o %s\n%s\n", name, format, out)
			}
		}
	}
	golden(t, "ls.golden", tables.String())
}

func TestCRUD(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	write := func(content string) {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("id: p9\nname: nine\n---\nid: p8\nname: eight\n")
	if out := e.ok("partition", "create", "-f", file); !strings.Contains(out, "p9") || !strings.Contains(out, "nine") {
		t.Errorf("create printed\n%s", out)
	}
	e.fails([]string{"409"}, "partition", "create", "-f", file)
	write(`{"id": "p9", "name": "NINE"}`)
	e.ok("partition", "update", "-f", file)
	write("id: p9\nname: stale\nversion: 1\n")
	e.fails([]string{"version", "409"}, "partition", "update", "-f", file)
	write("id: p9\nnmae: typo\n")
	e.fails([]string{`unknown field "nmae"`}, "partition", "update", "-f", file)
	if got := e.items("partition", "ls"); !slices.Equal(got, []string{"p8", "p9"}) {
		t.Errorf("partitions %q", got)
	}
	if out := e.ok("partition", "rm", "p8", "p9"); out != "partition p8 deleted\npartition p9 deleted\n" {
		t.Errorf("rm printed %q", out)
	}
	_, stderr, err := e.run("partition", "ls")
	if err != nil || stderr != "No resources found.\n" {
		t.Errorf("ls of nothing: %v, stderr %q", err, stderr)
	}
	if out := e.ok("partition", "ls", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty json list %q", out)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", seed)
	e.fails([]string{"nope", "404 Not Found"}, "partition", "describe", "nope")
	e.fails([]string{"nope", "404"}, "machine", "describe", "nope")
	e.fails([]string{`output format "xml"`}, "partition", "ls", "-o", "xml")
	e.fails([]string{`"file" not set`}, "apply")
	e.fails([]string{"no-such-file"}, "apply", "-f", "no-such-file")
	e.fails([]string{"unknown command"}, "partition", "frobnicate")
	e.fails([]string{"in use", "409"}, "partition", "rm", "p1")

	e.stdin = "kind: Widget\nspec: {id: w}\n"
	e.fails([]string{`kind "Widget"`, "Partition"}, "apply", "-f", "-")
	e.stdin = "kind: Size\nspec: {id: s, constraints: [{type: cores, min: 1, max: 2}], colour: red}\n"
	e.fails([]string{`unknown field "colour"`}, "apply", "-f", "-")
	e.stdin = "kind: Size\nspec: {name: no-id}\n"
	e.fails([]string{"needs an id"}, "apply", "-f", "-")
	e.stdin = "kind: Partition\nspec: {id: p2, dnsServers: [not-an-ip]}\n"
	e.fails([]string{"not-an-ip", "400"}, "apply", "-f", "-")
	e.stdin = "kind: [\n"
	e.fails([]string{"document 1"}, "apply", "-f", "-")

	e.vars[metalctl.EnvToken] = "wrong"
	e.fails([]string{"401"}, "partition", "ls")
	delete(e.vars, metalctl.EnvURL)
	e.fails([]string{"no metal-api URL", metalctl.EnvURL}, "partition", "ls")
}

func TestConfig(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "metalctl.yaml")
	write := func(content string) {
		if err := os.WriteFile(cfg, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.vars = map[string]string{}
	// partition ls needs a token, so a wrong one shows.
	write("url: " + e.api.URL + "\ntoken: " + clienttest.AdminToken + "\n")
	e.ok("--config", cfg, "partition", "ls") // from the file

	write("url: http://127.0.0.1:1\ntoken: wrong\n")
	e.vars[metalctl.EnvURL] = e.api.URL
	e.fails([]string{"401"}, "--config", cfg, "partition", "ls") // URL from the environment, token from the file
	e.vars[metalctl.EnvToken] = clienttest.AdminToken
	e.ok("--config", cfg, "partition", "ls") // both from the environment

	e.vars[metalctl.EnvToken] = "wrong"
	e.ok("--config", cfg, "--token", clienttest.AdminToken, "partition", "ls") // flag over environment
	e.fails([]string{"connection refused"}, "--config", cfg, "--url", "http://127.0.0.1:1", "--token", "x", "partition", "ls")
	out := e.ok("--config", cfg, "version")
	if out != "Client: test\nServer: clienttest (store sqlite)\n" {
		t.Errorf("version printed %q", out)
	}

	write("url: " + e.api.URL + "\ntokn: typo\n")
	e.fails([]string{"tokn"}, "--config", cfg, "version")
	e.fails([]string{"no-such.yaml"}, "--config", filepath.Join(dir, "no-such.yaml"), "version")
}

func TestCompletion(t *testing.T) {
	e := newEnv(t)
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef", "fish": "complete -c metalctl"} {
		if out := e.ok("completion", shell); !strings.Contains(out, want) {
			t.Errorf("completion %s does not contain %q", shell, want)
		}
	}
	e.ok("apply", "-f", seed)
	// Cobra's hidden completion request: IDs of the resource come from the API.
	out := e.ok("__complete", "partition", "describe", "")
	if !strings.HasPrefix(out, "p1\n") {
		t.Errorf("completion of partition ids:\n%s", out)
	}
}
