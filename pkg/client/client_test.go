package client_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-openapi/runtime"
	"github.com/go-openapi/strfmt"

	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	"github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/project"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// specOp is one operation of openapi.json.
type specOp struct {
	method string
	path   *regexp.Regexp
	status int // the declared success status
}

// loadSpec reads the operations of the committed spec, from which the client is generated.
func loadSpec(t *testing.T) map[string]specOp {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string                     `json:"operationId"`
			Responses   map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	param := regexp.MustCompile(`\\\{[a-zA-Z]+\\\}`)
	ops := map[string]specOp{}
	for path, methods := range doc.Paths {
		re := regexp.MustCompile("^" + param.ReplaceAllString(regexp.QuoteMeta(path), "[^/]+") + "$")
		for method, op := range methods {
			o := specOp{method: strings.ToUpper(method), path: re}
			for code := range op.Responses {
				if n, err := strconv.Atoi(code); err == nil && n/100 == 2 {
					o.status = n
				}
			}
			if o.status == 0 {
				t.Fatalf("openapi.json: %s has no success response", op.OperationID)
			}
			if _, dup := ops[op.OperationID]; dup {
				t.Fatalf("openapi.json: operationId %s used twice", op.OperationID)
			}
			ops[op.OperationID] = o
		}
	}
	return ops
}

// exchange is one HTTP request and the status it got.
type exchange struct {
	method, path string
	status       int
}

// recorder is an http.RoundTripper that remembers every exchange, so the test checks the status on
// the wire rather than what the generated code makes of it.
type recorder struct {
	mu  sync.Mutex
	log []exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, exchange{req.Method, req.URL.Path, resp.StatusCode})
	return resp, nil
}

func (r *recorder) since(n int) []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log[n:])
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

// TestEveryOperation drives each operation of the spec through the generated client against a real
// metal-api, in an order where each call finds what it needs, and checks the status on the wire and
// the decoded body. The step table must cover the spec exactly.
func TestEveryOperation(t *testing.T) {
	ops := loadSpec(t)
	covered := map[string]bool{}
	for _, s := range steps {
		if _, ok := ops[s.op]; !ok {
			t.Errorf("step %s: the spec has no such operation", s.op)
		}
		covered[s.op] = true
	}
	for id := range ops {
		if !covered[id] {
			t.Errorf("operation %s of openapi.json has no step in the table of client_test", id)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	api := clienttest.Start(t)
	rec := &recorder{}
	c, err := client.NewWithHTTPClient(api.URL, clienttest.AdminToken, &http.Client{Transport: rec})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, api: api, c: c}
	for _, s := range steps {
		n := rec.len()
		resp, err := s.call(f)
		if err != nil {
			t.Fatalf("%s: %s", s.op, client.Message(err))
		}
		want, sent := ops[s.op], false
		for _, x := range rec.since(n) {
			if x.method == want.method && want.path.MatchString(x.path) {
				sent = true
				if x.status != want.status {
					t.Fatalf("%s: %s %s answered %d, want %d", s.op, x.method, x.path, x.status, want.status)
				}
			}
		}
		if !sent {
			t.Fatalf("%s: no %s %s was sent", s.op, want.method, want.path)
		}
		payload := reflect.ValueOf(resp).MethodByName("GetPayload")
		if !payload.IsValid() {
			t.Fatalf("%s: response %T has no payload", s.op, resp)
		}
		if p := payload.Call(nil)[0]; p.IsNil() {
			t.Fatalf("%s: empty payload", s.op)
		}
	}
}

// TestErrors checks that error responses decode as {code, message} with the right status.
func TestErrors(t *testing.T) {
	api := clienttest.Start(t)
	admin := api.Client(clienttest.AdminToken)
	ctx := t.Context()

	// A viewer token of a project: may read, but not create partitions.
	proj, err := admin.Project.CreateProjectContext(ctx, projectParams(&wire.Project{Name: "tenant"}), nil)
	if err != nil {
		t.Fatal(client.Message(err))
	}
	viewer, err := admin.Token.CreateTokenContext(ctx, tokenParams(&wire.Token{Name: "viewer", Role: "viewer",
		ProjectID: proj.Payload.ID}), nil)
	if err != nil {
		t.Fatal(client.Message(err))
	}

	newPartition := func(c *metalapi.MetalAPI) error {
		_, err := c.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().
			WithBody(&wire.Partition{ID: "p1"}), nil)
		return err
	}
	for _, tc := range []struct {
		name    string
		call    func() error
		status  int
		message string
	}{
		{"not found", func() error {
			_, err := admin.Partition.GetPartitionContext(ctx, partition.NewGetPartitionParams().WithID("nope"), nil)
			return err
		}, http.StatusNotFound, "nope"},
		{"machine not found", func() error {
			_, err := admin.Machine.GetMachineContext(ctx, machine.NewGetMachineParams().WithID("nope"), nil)
			return err
		}, http.StatusNotFound, "nope"},
		{"unknown field", func() error {
			// The generated bodies can't carry unknown fields, so send raw JSON through the same transport
			// and the generated response reader.
			_, err := admin.Transport.Submit(&runtime.ClientOperation{
				ID: "createPartition", Method: http.MethodPost, PathPattern: "/v1/partition",
				ProducesMediaTypes: []string{"application/json"}, ConsumesMediaTypes: []string{"application/json"},
				Schemes: []string{"http"},
				Params: runtime.ClientRequestWriterFunc(func(r runtime.ClientRequest, _ strfmt.Registry) error {
					return r.SetBodyParam(json.RawMessage(`{"id":"p2","bogus":true}`))
				}),
				Reader: &partition.CreatePartitionReader{},
			})
			return err
		}, http.StatusBadRequest, "bogus"},
		{"invalid", func() error {
			_, err := admin.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().
				WithBody(&wire.Partition{ID: "p3", DNSServers: []string{"not-an-ip"}}), nil)
			return err
		}, http.StatusBadRequest, "not-an-ip"},
		{"no token", func() error { return newPartition(api.Client("")) }, http.StatusUnauthorized, ""},
		{"bad token", func() error { return newPartition(api.Client("wrong")) }, http.StatusUnauthorized, ""},
		{"viewer", func() error { return newPartition(api.Client(viewer.Payload.Secret)) }, http.StatusForbidden, "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatalf("no error, want status %d", tc.status)
			}
			status, body, ok := client.ErrorBody(err)
			if !ok {
				t.Fatalf("error %T is not an API error: %v", err, err)
			}
			if status != tc.status || body.Code != int64(tc.status) {
				t.Errorf("status %d, body code %d, want %d: %s", status, body.Code, tc.status, client.Message(err))
			}
			if body.Message == "" || !strings.Contains(body.Message, tc.message) {
				t.Errorf("message %q, want one containing %q", body.Message, tc.message)
			}
			if !client.IsStatus(err, tc.status) {
				t.Errorf("IsStatus(%d) is false", tc.status)
			}
		})
	}
	if _, _, ok := client.ErrorBody(os.ErrNotExist); ok {
		t.Error("ErrorBody accepts an error that is no API response")
	}
}

// TestZeroValues checks that optional fields whose zero value means something (a quota of 0, not
// unlimited) survive the generated bodies.
func TestZeroValues(t *testing.T) {
	api := clienttest.Start(t)
	admin := api.Client(clienttest.AdminToken)
	var p wire.Project
	if err := json.Unmarshal([]byte(`{"name": "no-ips", "quotas": {"ips": 0}}`), &p); err != nil {
		t.Fatal(err)
	}
	created, err := admin.Project.CreateProjectContext(t.Context(), projectParams(&p), nil)
	if err != nil {
		t.Fatal(client.Message(err))
	}
	got, err := admin.Project.GetProjectContext(t.Context(), project.NewGetProjectParams().WithID(created.Payload.ID), nil)
	if err != nil {
		t.Fatal(client.Message(err))
	}
	raw, err := json.Marshal(got.Payload.Quotas)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"ips":0}` {
		t.Errorf("quotas %s, want {\"ips\":0}", raw)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true},
		{"https://metal.example.com/prefix/", true},
		{"127.0.0.1:8080", false},
		{"ftp://host", false},
		{"http://", false},
		{"http://host?x=1", false},
		{"http://user:pw@host", false},
		{"http://host/%zz", false},
	} {
		_, err := client.New(tc.url, "t")
		if (err == nil) != tc.ok {
			t.Errorf("New(%q): err %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

// TestBasePath checks that a path prefix in the URL is kept in front of the operations' paths and
// that the token is sent, but not dumped to stderr when DEBUG is set.
func TestBasePath(t *testing.T) {
	t.Setenv("DEBUG", "1")
	var got string
	rec := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r.Method + " " + r.URL.String() + " " + r.Header.Get("Authorization")
		return nil, os.ErrDeadlineExceeded
	})
	c, err := client.NewWithHTTPClient("https://metal.example.com/api/", "s3cret", &http.Client{Transport: rec})
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = stderr
	_, _ = c.Partition.GetPartitionContext(t.Context(), partition.NewGetPartitionParams().WithID("p1"), nil)
	os.Stderr = saved
	if want := "GET https://metal.example.com/api/v1/partition/p1 Bearer s3cret"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	dumped, err := os.ReadFile(stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dumped), "s3cret") {
		t.Errorf("the token was written to stderr:\n%s", dumped)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
