package nft

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Render writes the ruleset in `nft -f` syntax: an atomic replace of
// `table inet firewall` (add, delete, then define the table).
func Render(w io.Writer, rs *Ruleset) error {
	c, err := compile(rs)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\n", TableName, TableName)
	writeText(&b, c)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write ruleset: %w", err)
	}
	return nil
}

func writeText(b *strings.Builder, c *compiled) {
	fmt.Fprintf(b, "table inet %s {\n", TableName)
	for _, n := range c.counters {
		fmt.Fprintf(b, "\tcounter %s {\n\t}\n", n)
	}
	for _, s := range c.sets {
		fmt.Fprintf(b, "\tset %s {\n", s.name)
		typ := "ipv4_addr"
		if s.v6 {
			typ = "ipv6_addr"
		}
		switch s.kind {
		case setPrefixes:
			fmt.Fprintf(b, "\t\ttype %s\n\t\tflags interval\n", typ)
		case setAddrs:
			fmt.Fprintf(b, "\t\ttype %s\n", typ)
		case setAddrPort:
			fmt.Fprintf(b, "\t\ttype %s . inet_service\n", typ)
		}
		if len(s.elems) > 0 {
			b.WriteString("\t\telements = {")
			for i, e := range s.elems {
				if i > 0 {
					b.WriteString(",")
				}
				if i%4 == 0 {
					b.WriteString("\n\t\t\t")
				} else {
					b.WriteString(" ")
				}
				b.WriteString(elemText(s.kind, e))
			}
			b.WriteString("\n\t\t}\n")
		}
		b.WriteString("\t}\n")
	}
	for _, ch := range c.chains {
		fmt.Fprintf(b, "\tchain %s {\n", ch.name)
		switch ch.hook {
		case "forward":
			fmt.Fprintf(b, "\t\ttype filter hook forward priority filter; policy %s;\n", ch.policy)
		case "postrouting":
			fmt.Fprintf(b, "\t\ttype nat hook postrouting priority srcnat; policy %s;\n", ch.policy)
		}
		for _, r := range ch.rules {
			parts := make([]string, len(r))
			for i, s := range r {
				parts[i] = s.text()
			}
			fmt.Fprintf(b, "\t\t%s\n", strings.Join(parts, " "))
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
}

func elemText(k setKind, e elem) string {
	switch k {
	case setPrefixes:
		if p, ok := rangePrefix(e.ip, e.end); ok {
			return p.String()
		}
		return e.ip.String() + "-" + e.end.String()
	case setAddrPort:
		return fmt.Sprintf("%s . %d", e.ip, e.port)
	}
	return e.ip.String()
}

// rangePrefix returns the prefix covering exactly [first, last], if any.
func rangePrefix(first, last netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() == first && lastAddr(p) == last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
