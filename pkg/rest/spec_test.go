package rest

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the committed OpenAPI spec")

const specFile = "../client/openapi.json"

// TestSpecCommitted fails when the committed spec (from which pkg/client is generated) differs from
// what the route table produces. Run `go test ./pkg/rest -run TestSpecCommitted -update` or
// `make generate` after changing routes or wire types.
func TestSpecCommitted(t *testing.T) {
	got := OpenAPI()
	if *update {
		if err := os.WriteFile(specFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatalf("read committed spec: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: run make generate", specFile)
	}
}
