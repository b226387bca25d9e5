package externalgrpc_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.golden")

// TestWire pins the wire interface (service and method names, message and field names, numbers,
// types) to testdata/wire.golden, which was checked against upstream's externalgrpc.proto:
// cluster-autoscaler is the client, so any difference is a break.
func TestWire(t *testing.T) {
	fd := externalgrpc.File_externalgrpc_proto
	var b strings.Builder
	fmt.Fprintf(&b, "package %s\n", fd.Package())
	for i := range fd.Services().Len() {
		s := fd.Services().Get(i)
		for j := range s.Methods().Len() {
			m := s.Methods().Get(j)
			fmt.Fprintf(&b, "rpc /%s/%s(%s) returns (%s)\n", s.FullName(), m.Name(), m.Input().FullName(), m.Output().FullName())
		}
	}
	var messages func(ms protoreflect.MessageDescriptors)
	messages = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			if m.IsMapEntry() {
				continue
			}
			fmt.Fprintf(&b, "message %s\n", m.FullName())
			for j := range m.Fields().Len() {
				f := m.Fields().Get(j)
				typ := f.Kind().String()
				switch {
				case f.IsMap():
					typ = fmt.Sprintf("map<%s, %s>", f.MapKey().Kind(), typeName(f.MapValue()))
				case f.Message() != nil || f.Enum() != nil:
					typ = typeName(f)
				}
				fmt.Fprintf(&b, "  %d %s %s %s\n", f.Number(), f.Cardinality(), typ, f.Name())
			}
			for j := range m.Enums().Len() {
				e := m.Enums().Get(j)
				fmt.Fprintf(&b, "  enum %s\n", e.FullName())
				for k := range e.Values().Len() {
					fmt.Fprintf(&b, "    %d %s\n", e.Values().Get(k).Number(), e.Values().Get(k).Name())
				}
			}
			messages(m.Messages())
		}
	}
	messages(fd.Messages())
	golden := filepath.Join("testdata", "wire.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), b.String()); d != "" {
		t.Errorf("wire interface changed (-golden +now):\n%s", d)
	}
}

func typeName(f protoreflect.FieldDescriptor) string {
	switch {
	case f.Message() != nil:
		return string(f.Message().FullName())
	case f.Enum() != nil:
		return string(f.Enum().FullName())
	}
	return f.Kind().String()
}
