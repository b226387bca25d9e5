package dnsproxy

import (
	"strings"
	"testing"
)

func TestSelectorMatch(t *testing.T) {
	for _, tc := range []struct {
		sel  Selector
		name string
		want bool
	}{
		// matchName: exact, case-insensitive, trailing dot optional.
		{Selector{MatchName: "www.example.com"}, "www.example.com", true},
		{Selector{MatchName: "www.example.com"}, "www.example.com.", true},
		{Selector{MatchName: "WWW.Example.com."}, "www.EXAMPLE.COM", true},
		{Selector{MatchName: "www.example.com"}, "example.com", false},
		{Selector{MatchName: "www.example.com"}, "a.www.example.com", false},
		{Selector{MatchName: "www.example.com"}, "www.example.com.evil.test", false},
		{Selector{MatchName: "www.example.com"}, "wwwxexample.com", false}, // '.' is no wildcard
		{Selector{MatchName: "_sip._tcp.example.com"}, "_SIP._tcp.example.com.", true},

		// "*" alone: everything, including the root.
		{Selector{MatchPattern: "*"}, "example.com", true},
		{Selector{MatchPattern: "*"}, "a.b.c.d", true},
		{Selector{MatchPattern: "*"}, ".", true},
		{Selector{MatchPattern: "*."}, "x.y", true},

		// Leading "*.": any depth of subdomains, never the apex.
		{Selector{MatchPattern: "*.example.com"}, "a.example.com", true},
		{Selector{MatchPattern: "*.example.com"}, "a.b.example.com", true},
		{Selector{MatchPattern: "*.example.com"}, "A.B.Example.COM.", true},
		{Selector{MatchPattern: "*.example.com"}, "example.com", false},
		{Selector{MatchPattern: "*.example.com"}, "badexample.com", false},
		{Selector{MatchPattern: "*.example.com"}, "a.example.com.evil.test", false},
		{Selector{MatchPattern: "*.example.com"}, "a.example.co", false},
		{Selector{MatchPattern: "*.example.com."}, "a.example.com", true},
		// "**." (Cilium's any-depth spelling) is the same as "*.".
		{Selector{MatchPattern: "**.example.com"}, "a.b.example.com", true},
		{Selector{MatchPattern: "**.example.com"}, "example.com", false},

		// "*" inside a label, possibly empty.
		{Selector{MatchPattern: "api-*.example.com"}, "api-v1.example.com", true},
		{Selector{MatchPattern: "api-*.example.com"}, "api-.example.com", true},
		{Selector{MatchPattern: "api-*.example.com"}, "api.example.com", false},
		{Selector{MatchPattern: "api-*.example.com"}, "x.api-v1.example.com", false},
		{Selector{MatchPattern: "*example.com"}, "example.com", true},
		{Selector{MatchPattern: "*example.com"}, "myexample.com", true},
		{Selector{MatchPattern: "*example.com"}, "example.org", false},
		{Selector{MatchPattern: "www.*.com"}, "www.example.com", true},
		{Selector{MatchPattern: "www.*.com"}, "www.a.b.com", true},
		{Selector{MatchPattern: "www.*.com"}, "www.com", false},
		{Selector{MatchPattern: "s3.*.amazonaws.com"}, "s3.eu-central-1.amazonaws.com", true},
		{Selector{MatchPattern: "s3.*.amazonaws.com"}, "s3.amazonaws.com", false},
		// Trailing "*".
		{Selector{MatchPattern: "example.*"}, "example.com", true},
		{Selector{MatchPattern: "example.*"}, "example.co.uk", true},
		{Selector{MatchPattern: "example.*"}, "www.example.com", false},
		// Regex metacharacters are literal (and not allowed anyway).
		{Selector{MatchPattern: "a.example.com"}, "abexample.com", false},

		// Names with characters the pattern language cannot produce.
		{Selector{MatchPattern: "*.example.com"}, `a\ b.example.com`, false},
		{Selector{MatchPattern: "*.example.com"}, `a\.b.example.com`, false},
	} {
		tc.sel.Set = "s"
		if got := tc.sel.Match(tc.name); got != tc.want {
			t.Errorf("%+v matches %q: %v, want %v", tc.sel, tc.name, got, tc.want)
		}
	}
}

func TestSelectorValidate(t *testing.T) {
	for _, tc := range []struct {
		sel Selector
		ok  bool
	}{
		{Selector{Set: "s", MatchName: "www.example.com"}, true},
		{Selector{Set: "s", MatchName: "."}, true},
		{Selector{Set: "s", MatchPattern: "*"}, true},
		{Selector{Set: "s", MatchPattern: "*.example.com"}, true},
		{Selector{Set: "s", MatchPattern: "a*b*c.example.com"}, true},
		{Selector{Set: "s", MatchName: "under_score.example.com"}, true},

		{Selector{MatchName: "www.example.com"}, false},                                        // no set
		{Selector{Set: "s"}, false},                                                            // neither
		{Selector{Set: "s", MatchName: "a.com", MatchPattern: "*.a.com"}, false},               // both
		{Selector{Set: "s", MatchName: "*.example.com"}, false},                                // "*" only in patterns
		{Selector{Set: "s", MatchName: "a..example.com"}, false},                               // empty label
		{Selector{Set: "s", MatchName: ".example.com"}, false},                                 // empty label
		{Selector{Set: "s", MatchName: "exa mple.com"}, false},                                 // space
		{Selector{Set: "s", MatchName: `a\.b.com`}, false},                                     // escapes
		{Selector{Set: "s", MatchPattern: "*..example.com"}, false},                            // empty label
		{Selector{Set: "s", MatchPattern: "(a|b).example.com"}, false},                         // regex syntax
		{Selector{Set: "s", MatchPattern: "a?.example.com"}, false},                            // no '?' wildcard
		{Selector{Set: "s", MatchPattern: "[a-z].example.com"}, false},                         // no classes
		{Selector{Set: "s", MatchName: string(make([]byte, 64)) + ".com"}, false},              // NULs
		{Selector{Set: "s", MatchName: strings.Repeat("a", 64) + ".example.com"}, false},       // label > 63
		{Selector{Set: "s", MatchName: strings.Repeat("abcdefg.", 40) + "example.com"}, false}, // name > 255
	} {
		err := tc.sel.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok %v", tc.sel, err, tc.ok)
		}
	}
}
