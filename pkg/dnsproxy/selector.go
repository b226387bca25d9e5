package dnsproxy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/miekg/dns"
)

// Selector is one toFQDNs entry of a ClusterwideNetworkPolicy; exactly one of
// MatchName and MatchPattern is set. Set names the nftables set the selector
// feeds; the caller chooses it, and several selectors may feed the same set.
//
// MatchName is an exact name: compared case-insensitively, with or without
// the trailing dot ("Example.COM" and "example.com." are the same name).
//
// MatchPattern follows the Cilium toFQDNs convention with one deliberate
// difference (see below):
//   - A pattern consisting of "*" alone matches every name, including the
//     root ".".
//   - Otherwise "*" matches any run, possibly empty, of DNS name characters
//     (letters, digits, '-', '_') and, unlike Cilium, also dots: so
//     "*.example.com" matches "a.example.com" and "a.b.example.com" but
//     not "example.com" itself (the literal "." before "example" has
//     nothing to match), and "api-*.example.com" matches
//     "api-v1.example.com". Cilium restricts "*" to one label and spells
//     "any depth" as "**."; metalforge's firewall policies always meant any
//     depth, and "**" is accepted as a synonym of "*" so Cilium-written
//     patterns keep working.
//   - Everything else matches literally and case-insensitively; the
//     trailing dot is optional.
//
// Allowed characters are letters, digits, '-', '_', '.' and (in patterns)
// '*'; the name with every '*' replaced by a letter must be a valid domain
// name (no empty labels, labels ≤ 63 octets, ≤ 255 octets in all).
type Selector struct {
	Set          string
	MatchName    string
	MatchPattern string
}

var (
	nameChars    = regexp.MustCompile(`^[-a-z0-9_.]+$`)
	patternChars = regexp.MustCompile(`^[-a-z0-9_.*]+$`)
)

// matcher is a compiled Selector.
type matcher struct {
	sel   Selector
	all   bool           // pattern "*"
	name  string         // canonical name for MatchName
	regex *regexp.Regexp // for other patterns
}

// canonical returns the lower-case FQDN form of name, as used for matching.
func canonical(name string) string {
	return dns.Fqdn(strings.ToLower(name))
}

// compile validates s and returns its matcher.
func compile(s Selector) (matcher, error) {
	if s.Set == "" {
		return matcher{}, errors.New("selector has no set")
	}
	switch {
	case s.MatchName != "" && s.MatchPattern != "":
		return matcher{}, fmt.Errorf("selector for set %q has both matchName and matchPattern", s.Set)
	case s.MatchName != "":
		n := canonical(s.MatchName)
		if n != "." && (!nameChars.MatchString(n) || !validName(n)) {
			return matcher{}, fmt.Errorf("selector for set %q: invalid matchName %q", s.Set, s.MatchName)
		}
		return matcher{sel: s, name: n}, nil
	case s.MatchPattern != "":
		p := canonical(s.MatchPattern)
		for strings.Contains(p, "**") {
			p = strings.ReplaceAll(p, "**", "*")
		}
		if p == "*." {
			return matcher{sel: s, all: true}, nil
		}
		if !patternChars.MatchString(p) || !validName(strings.ReplaceAll(p, "*", "a")) {
			return matcher{}, fmt.Errorf("selector for set %q: invalid matchPattern %q", s.Set, s.MatchPattern)
		}
		var b strings.Builder
		b.WriteString("^")
		for i, part := range strings.Split(p, "*") {
			if i > 0 {
				b.WriteString(`[-a-z0-9_.]*`)
			}
			b.WriteString(regexp.QuoteMeta(part))
		}
		b.WriteString("$")
		re, err := regexp.Compile(b.String())
		if err != nil {
			return matcher{}, fmt.Errorf("selector for set %q: compile matchPattern %q: %w", s.Set, s.MatchPattern, err)
		}
		return matcher{sel: s, regex: re}, nil
	default:
		return matcher{}, fmt.Errorf("selector for set %q has neither matchName nor matchPattern", s.Set)
	}
}

// validName reports whether the FQDN n has non-empty labels within DNS limits.
func validName(n string) bool {
	if _, ok := dns.IsDomainName(n); !ok || len(n) > 255 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// match reports whether the canonical name n is selected.
func (m *matcher) match(n string) bool {
	switch {
	case m.all:
		return true
	case m.regex != nil:
		return m.regex.MatchString(n)
	default:
		return m.name == n
	}
}

// Match reports whether name is selected by s; it is false when s is invalid.
// It is the same test the proxy applies to DNS answers.
func (s Selector) Match(name string) bool {
	m, err := compile(s)
	if err != nil {
		return false
	}
	return m.match(canonical(name))
}

// Validate reports whether s is a well-formed selector.
func (s Selector) Validate() error {
	_, err := compile(s)
	return err
}
