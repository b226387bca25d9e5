package metalctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// formats are the values of -o.
var formats = []string{"table", "wide", "yaml", "json"}

func (c *cli) checkOutput() error {
	if !slices.Contains(formats, c.output) {
		return fmt.Errorf("output format %q is not one of %s", c.output, strings.Join(formats, ", "))
	}
	return nil
}

// obj is an API object as generic JSON, which the table columns read.
type obj = map[string]any

// column is one column of a table: a header and how to render a cell.
type column struct {
	header string
	value  func(o obj) string
	wide   bool // only with -o wide
}

// col renders the value at a dotted JSON path ("allocation.projectID").
func col(header, path string) column {
	return column{header: header, value: func(o obj) string { return cell(lookup(o, path)) }}
}

// fn renders a computed cell.
func fn(header string, value func(o obj) string) column {
	return column{header: header, value: value}
}

func (c column) onlyWide() column {
	c.wide = true
	return c
}

// print writes v, an API object or a slice of them, in the output format: a table with one row per
// object for table and wide, the objects themselves for yaml and json.
func (c *cli) print(cmd *cobra.Command, v any, cols []column) error {
	w := cmd.OutOrStdout()
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
		v = []any{} // an empty list, not null
	}
	switch c.output {
	case "json", "yaml":
		return c.dump(w, v)
	}
	rows, err := objects(v)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "No resources found.")
		return nil
	}
	return table(w, rows, cols, c.output == "wide")
}

// dump writes v as JSON or YAML (table and wide take YAML: that is what describe shows).
func (c *cli) dump(w io.Writer, v any) error {
	if c.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	raw, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(raw)
	return err
}

// objects turns an object or a slice of objects into generic JSON objects.
func objects(v any) ([]obj, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if bytes.HasPrefix(raw, []byte("[")) {
		var out []obj
		return out, dec.Decode(&out)
	}
	var o obj
	if err := dec.Decode(&o); err != nil {
		return nil, err
	}
	return []obj{o}, nil
}

// table writes rows under a header, aligned like kubectl's tables, without trailing blanks.
func table(w io.Writer, rows []obj, cols []column, wide bool) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 3, ' ', 0)
	var shown []column
	for _, c := range cols {
		if !c.wide || wide {
			shown = append(shown, c)
		}
	}
	line := make([]string, len(shown))
	for i, c := range shown {
		line[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(line, "\t"))
	for _, r := range rows {
		for i, c := range shown {
			line[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c.value(r))
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		if _, err := io.WriteString(w, strings.TrimRight(l, " \n")+strings.Repeat("\n", strings.Count(l, "\n"))); err != nil {
			return err
		}
	}
	return nil
}

// lookup follows a dotted path through nested objects.
func lookup(o obj, path string) any {
	var v any = o
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(obj)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// cell renders a JSON value: lists comma-separated, maps as sorted k=v, false and null empty.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return ""
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			parts = append(parts, cell(e))
		}
		return strings.Join(parts, ",")
	case obj:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(v))
		for _, k := range keys {
			parts = append(parts, k+"="+cell(v[k]))
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}

// list returns the objects of a JSON list at path.
func list(o obj, path string) []obj {
	var out []obj
	if vs, ok := lookup(o, path).([]any); ok {
		for _, v := range vs {
			if m, ok := v.(obj); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// number returns the JSON number at path, 0 if there is none.
func number(o obj, path string) uint64 {
	n, ok := lookup(o, path).(json.Number)
	if !ok {
		return 0
	}
	var u uint64
	_, _ = fmt.Sscan(n.String(), &u)
	return u
}

// bytesOf renders a byte count in the largest binary unit that divides it.
func bytesOf(n uint64) string {
	for _, u := range []struct {
		name string
		size uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// since renders the age of an RFC 3339 time like kubectl: 45s, 12m, 5h, 3d; "" for no or zero time.
func since(now time.Time, ts string) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil || t.Year() <= 1 {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// timestamp renders an RFC 3339 time in UTC to the second; "" for no or zero time.
func timestamp(ts string) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil || t.Year() <= 1 {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}
