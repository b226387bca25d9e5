package providerid

import "testing"

func TestRoundTrip(t *testing.T) {
	id := Format("fra-1", "m-42")
	if id != "metal://fra-1/m-42" || !Is(id) {
		t.Fatalf("Format = %q", id)
	}
	for in, want := range map[string]string{id: "m-42", "metal://m-7": "m-7"} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "aws:///i-1", "metal://fra-1/", "metal://"} {
		if got, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %q, want an error", bad, got)
		}
	}
}
