package metalctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
)

// api is the generated client, short for the operation signatures below.
type api = *metalapi.MetalAPI

// resource is one kind of metal-api object and the operations it has; nil operations have no command.
type resource struct {
	name    string // command name: "partition"
	kind    string // kind in apply files: "Partition"; "" when the resource can't be applied
	aliases []string
	short   string
	columns []column

	list   func(ctx context.Context, c api, cursor string) (items []any, next string, err error)
	get    func(ctx context.Context, c api, id string) (any, error)
	create func(ctx context.Context, c api, body []byte) (any, error)
	update func(ctx context.Context, c api, id string, body []byte) (any, error)
	del    func(ctx context.Context, c api, id string) (any, error)

	// describe replaces the default describe (the object as YAML or JSON).
	describe func(c *cli, cmd *cobra.Command, id string) error
	// actions are the resource's other subcommands.
	actions func(c *cli, r *resource) []*cobra.Command
}

// anys turns a page of generated objects into items of a resource.
func anys[T any](ts []*T) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// decode reads a body strictly into a generated type: unknown fields are errors, as on the server.
func decode[T any](body []byte) (*T, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	v := new(T)
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("decode %T: %w", *v, err)
	}
	return v, nil
}

// opt is an optional string parameter.
func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (c *cli) resourceCommand(r *resource) *cobra.Command {
	cmd := group(&cobra.Command{Use: r.name, Aliases: r.aliases, Short: r.short})
	if r.list != nil {
		cmd.AddCommand(&cobra.Command{
			Use: "ls", Aliases: []string{"list"}, Short: "List " + r.name + "s", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				items, err := c.listAll(ctxOf(cmd), r)
				if err != nil {
					return err
				}
				return c.print(cmd, items, r.columns)
			},
		})
	}
	if r.get != nil || r.describe != nil {
		cmd.AddCommand(&cobra.Command{
			Use: "describe ID", Short: "Show a " + r.name, Args: cobra.ExactArgs(1),
			ValidArgsFunction: c.completeIDs(r),
			RunE: func(cmd *cobra.Command, args []string) error {
				if r.describe != nil {
					return r.describe(c, cmd, args[0])
				}
				api, err := c.client()
				if err != nil {
					return err
				}
				v, err := r.get(ctxOf(cmd), api, args[0])
				if err != nil {
					return err
				}
				return c.dump(cmd.OutOrStdout(), v)
			},
		})
	}
	if r.create != nil {
		cmd.AddCommand(c.fileCommand("create", "Create "+r.name+"s from a YAML or JSON file", func(cmd *cobra.Command, body []byte) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			v, err := r.create(ctxOf(cmd), api, body)
			if err != nil {
				return err
			}
			return c.print(cmd, v, r.columns)
		}))
	}
	if r.update != nil && r.get != nil {
		cmd.AddCommand(c.fileCommand("update", "Update "+r.name+"s from a file (without a version: over whatever is stored)",
			func(cmd *cobra.Command, body []byte) error {
				v, err := c.updateOne(ctxOf(cmd), r, body, false)
				if err != nil {
					return err
				}
				return c.print(cmd, v, r.columns)
			}))
	}
	if r.create != nil && r.update != nil && r.get != nil {
		cmd.AddCommand(c.fileCommand("apply", "Create or update "+r.name+"s from a file", func(cmd *cobra.Command, body []byte) error {
			verb, err := c.applyOne(ctxOf(cmd), r, body)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), verb)
			return nil
		}))
	}
	if r.del != nil {
		cmd.AddCommand(&cobra.Command{
			Use: "delete ID...", Aliases: []string{"rm", "del"}, Short: "Delete " + r.name + "s", Args: cobra.MinimumNArgs(1),
			ValidArgsFunction: c.completeIDs(r),
			RunE: func(cmd *cobra.Command, args []string) error {
				api, err := c.client()
				if err != nil {
					return err
				}
				for _, id := range args {
					v, err := r.del(ctxOf(cmd), api, id)
					if err != nil {
						return err
					}
					if err := c.printDone(cmd, v, r, id, "deleted"); err != nil {
						return err
					}
				}
				return nil
			},
		})
	}
	if r.actions != nil {
		cmd.AddCommand(r.actions(c, r)...)
	}
	return cmd
}

// group makes a command that only holds subcommands fail on unknown ones (cobra would print the help
// and succeed).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	return cmd
}

// printDone reports an action on an object: "partition p1 deleted" in tables, the object otherwise.
func (c *cli) printDone(cmd *cobra.Command, v any, r *resource, id, verb string) error {
	if c.output == "json" || c.output == "yaml" {
		return c.dump(cmd.OutOrStdout(), v)
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", r.name, id, verb)
	return err
}

// listAll reads every page.
func (c *cli) listAll(ctx context.Context, r *resource) ([]any, error) {
	api, err := c.client()
	if err != nil {
		return nil, err
	}
	var all []any
	cursor := ""
	for {
		items, next, err := r.list(ctx, api, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" || next == cursor {
			return all, nil
		}
		cursor = next
	}
}

// fileCommand is a command that runs do for each document of -f FILE.
func (c *cli) fileCommand(use, short string, do func(cmd *cobra.Command, body []byte) error) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use: use + " -f FILE", Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocs(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			for _, d := range docs {
				if err := do(cmd, d); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML or JSON file, several YAML documents allowed; - for stdin")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// identity is the id and version of a body.
type identity struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// updateOne updates the object of body. Without a version in body (or with force) it takes the stored
// version, so the file wins; with one, a concurrent change makes the update fail.
func (c *cli) updateOne(ctx context.Context, r *resource, body []byte, force bool) (any, error) {
	api, err := c.client()
	if err != nil {
		return nil, err
	}
	var id identity
	if err := json.Unmarshal(body, &id); err != nil || id.ID == "" {
		return nil, fmt.Errorf("%s: the document has no id", r.name)
	}
	if id.Version == 0 || force {
		cur, err := r.get(ctx, api, id.ID)
		if err != nil {
			return nil, err
		}
		if body, err = withVersion(body, cur); err != nil {
			return nil, err
		}
	}
	return r.update(ctx, api, id.ID, body)
}

// applyOne creates the object of body or, when it exists, updates it to body.
func (c *cli) applyOne(ctx context.Context, r *resource, body []byte) (string, error) {
	api, err := c.client()
	if err != nil {
		return "", err
	}
	var id identity
	if err := json.Unmarshal(body, &id); err != nil || id.ID == "" {
		return "", fmt.Errorf("apply %s: the document needs an id", r.name)
	}
	_, err = r.get(ctx, api, id.ID)
	switch {
	case client.IsStatus(err, http.StatusNotFound):
		if _, err := r.create(ctx, api, body); err != nil {
			return "", fmt.Errorf("create %s %s: %w", r.name, id.ID, err)
		}
		return fmt.Sprintf("%s %s created", r.name, id.ID), nil
	case err != nil:
		return "", err
	}
	if _, err := c.updateOne(ctx, r, body, true); err != nil {
		return "", fmt.Errorf("update %s %s: %w", r.name, id.ID, err)
	}
	return fmt.Sprintf("%s %s configured", r.name, id.ID), nil
}

// withVersion sets the version of body to that of the stored object cur.
func withVersion(body []byte, cur any) ([]byte, error) {
	raw, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	var stored identity
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	fields["version"] = json.RawMessage(fmt.Sprint(stored.Version))
	return json.Marshal(fields)
}

var docSeparator = regexp.MustCompile(`^---\s*(#.*)?$`)

// readDocs reads the YAML (or JSON) documents of a file ("-" for in) as JSON, skipping empty ones.
func readDocs(in io.Reader, path string) ([][]byte, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(in)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() error {
		text := cur.Bytes()
		cur.Reset()
		js, err := yaml.YAMLToJSON(text)
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", path, len(docs)+1, err)
		}
		if t := bytes.TrimSpace(js); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
			docs = append(docs, js)
		}
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if docSeparator.MatchString(sc.Text()) {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		cur.Write(sc.Bytes())
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s has no documents", path)
	}
	return docs, nil
}

// completeIDs completes the IDs of a resource by listing it.
func (c *cli) completeIDs(r *resource) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if r.list == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		items, err := c.listAll(ctxOf(cmd), r)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var ids []cobra.Completion
		for _, it := range items {
			raw, _ := json.Marshal(it)
			var id identity
			if json.Unmarshal(raw, &id) == nil && strings.HasPrefix(id.ID, toComplete) {
				ids = append(ids, id.ID)
			}
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}

// applyDoc is one document of `metalctl apply`.
type applyDoc struct {
	Kind string          `json:"kind"`
	Spec json.RawMessage `json:"spec"`
}

func (c *cli) applyCommand() *cobra.Command {
	kinds := map[string]*resource{}
	var names []string
	for _, r := range c.resources() {
		if r.kind != "" {
			kinds[strings.ToLower(r.kind)] = r
			names = append(names, r.kind)
		}
	}
	cmd := c.fileCommand("apply", "Create or update seed data: YAML documents {kind, spec}, in order", func(cmd *cobra.Command, body []byte) error {
		d, err := decode[applyDoc](body)
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		r := kinds[strings.ToLower(d.Kind)]
		if r == nil {
			return fmt.Errorf("apply: kind %q is not one of %s", d.Kind, strings.Join(names, ", "))
		}
		if len(d.Spec) == 0 {
			return fmt.Errorf("apply %s: no spec", d.Kind)
		}
		verb, err := c.applyOne(ctxOf(cmd), r, d.Spec)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), verb)
		return err
	})
	cmd.Long = "Each document is {kind: " + strings.Join(names, "|") + ", spec: {...}}; objects are created, or\n" +
		"updated when they exist, in the order of the file. Running it again converges to the same state."
	return cmd
}
