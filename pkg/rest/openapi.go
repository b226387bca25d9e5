package rest

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Spec renders the OpenAPI 2.0 document of the route table. Definitions come from the Go types by
// reflection (json tags, embedded structs flattened), so the spec cannot drift from the server.
func (s *Server) Spec() []byte {
	g := &specGen{defs: map[string]any{}}
	paths := map[string]map[string]any{}
	for _, r := range s.routes {
		p := paths[r.path]
		if p == nil {
			p = map[string]any{}
			paths[r.path] = p
		}
		var params []any
		for _, name := range pathParams(r.path) {
			params = append(params, map[string]any{"name": name, "in": "path", "required": true, "type": "string"})
		}
		for _, q := range r.query {
			typ := "string"
			if q == "limit" {
				typ = "integer"
			}
			params = append(params, map[string]any{"name": q, "in": "query", "required": false, "type": typ})
		}
		if r.in != nil {
			params = append(params, map[string]any{"name": "body", "in": "body", "required": true, "schema": g.schema(r.in)})
		}
		op := map[string]any{
			"operationId": r.opID,
			"summary":     r.summary,
			"tags":        []string{tagOf(r.path)},
			"responses": map[string]any{
				statusKey(r.status): map[string]any{"description": "OK", "schema": g.schema(r.out)},
				"default":           map[string]any{"description": "Error", "schema": map[string]any{"$ref": "#/definitions/Error"}},
			},
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if r.access != public {
			op["security"] = []any{map[string]any{"token": []string{}}}
		} else {
			op["security"] = []any{}
		}
		p[strings.ToLower(r.method)] = op
	}
	g.schema(reflect.TypeFor[errorBody]())
	doc := map[string]any{
		"swagger": "2.0",
		"info": map[string]any{
			"title":       "metal-api",
			"description": "metalforge machine-management API",
			"version":     "v1",
		},
		"basePath":    "/",
		"consumes":    []string{"application/json"},
		"produces":    []string{"application/json"},
		"schemes":     []string{"http", "https"},
		"paths":       paths,
		"definitions": g.defs,
		"securityDefinitions": map[string]any{
			"token": map[string]any{"type": "apiKey", "in": "header", "name": "Authorization",
				"description": "Bearer <token>"},
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // maps of strings and slices always marshal
	}
	return append(b, '\n')
}

// errorBody is api.Error under the name the spec uses.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

var paramRE = regexp.MustCompile(`\{([a-zA-Z]+)\}`)

func pathParams(p string) []string {
	var out []string
	for _, m := range paramRE.FindAllStringSubmatch(p, -1) {
		out = append(out, m[1])
	}
	return out
}

func tagOf(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) > 1 {
		return parts[1]
	}
	return parts[0]
}

func statusKey(code int) string {
	if code == http.StatusCreated {
		return "201"
	}
	return "200"
}

type specGen struct {
	defs map[string]any
}

// defName names a definition: the Go type name, "XPage" for api.Page[*X].
func defName(t reflect.Type) string {
	n := t.Name()
	if i := strings.Index(n, "["); i >= 0 {
		elem := n[i+1 : len(n)-1]
		elem = elem[strings.LastIndex(elem, ".")+1:]
		return strings.TrimPrefix(elem, "*") + strings.ToUpper(n[:1]) + n[1:i]
	}
	if n == "errorBody" {
		return "Error"
	}
	return n
}

func (g *specGen) schema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case reflect.TypeFor[time.Duration]():
		return map[string]any{"type": "integer", "format": "int64"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Int32, reflect.Int16, reflect.Int8:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Uint64, reflect.Uint:
		return map[string]any{"type": "integer", "format": "uint64"}
	case reflect.Uint32, reflect.Uint16, reflect.Uint8:
		return map[string]any{"type": "integer", "format": "uint32"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := defName(t)
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = map[string]any{} // placeholder against recursion
			props := map[string]any{}
			g.fields(t, props)
			def := map[string]any{"type": "object", "properties": props}
			g.defs[name] = def
		}
		return map[string]any{"$ref": "#/definitions/" + name}
	case reflect.Interface:
		return map[string]any{"type": "object"}
	}
	panic("openapi: unsupported type " + t.String())
}

func (g *specGen) fields(t reflect.Type, props map[string]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			g.fields(f.Type, props)
			continue
		}
		if name == "" {
			name = f.Name
		}
		s := g.schema(f.Type)
		if f.Type.Kind() == reflect.Pointer && s["$ref"] == nil {
			// Optional scalars (*time.Time, *int, *bool, *string): generated clients must be able to
			// leave them out and to send their zero value, so they are pointers there too.
			s["x-nullable"] = true
		}
		props[name] = s
	}
}

// OpenAPI returns the spec without a running server (for `make generate` and the drift test).
func OpenAPI() []byte {
	s := &Server{}
	s.routes = s.table()
	return s.Spec()
}
