package authz

import (
	"fmt"
	"slices"
	"strings"
)

// Mapping turns identity-provider claim values (Entra group object ids, app-role values,
// group names of any OIDC provider) into grants.
type Mapping struct {
	// Value is matched exactly against each value of the configured claims.
	Value string
	Grant Grant
}

// ParseMappings parses the role map syntax of LANYARD_UI_ROLE_MAP: comma-separated
// entries "value=role" or "value=role:ns1|ns2", for example
//
//	Lanyard.Admin=admin,finance-platform=operator:finance,0b6c…=viewer
//
// It reports every malformed entry at once.
func ParseMappings(s string) ([]Mapping, error) {
	var out []Mapping
	var problems []string
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		value, rest, ok := strings.Cut(entry, "=")
		value = strings.TrimSpace(value)
		if !ok || value == "" {
			problems = append(problems, fmt.Sprintf("%q is not value=role[:namespace|namespace]", entry))
			continue
		}
		roleName, nsList, scoped := strings.Cut(rest, ":")
		role, ok := ParseRole(roleName)
		if !ok {
			problems = append(problems, fmt.Sprintf("%q: unknown role %q (viewer, operator, admin or approver)", entry, strings.TrimSpace(roleName)))
			continue
		}
		g := Grant{Role: role}
		if scoped {
			for ns := range strings.SplitSeq(nsList, "|") {
				if ns = strings.TrimSpace(ns); ns != "" {
					g.Namespaces = append(g.Namespaces, ns)
				}
			}
			if len(g.Namespaces) == 0 {
				problems = append(problems, fmt.Sprintf("%q: ':' must be followed by namespaces separated by |", entry))
				continue
			}
		}
		out = append(out, Mapping{Value: value, Grant: g})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return out, nil
}

// Resolve returns the grants the claim values earn, merged per role: unscoped wins over
// scoped, scoped namespaces are united.
func Resolve(mappings []Mapping, values []string) []Grant {
	byRole := map[Role]*Grant{}
	var order []Role
	for _, m := range mappings {
		if !slices.Contains(values, m.Value) {
			continue
		}
		g, seen := byRole[m.Grant.Role]
		if !seen {
			cp := Grant{Role: m.Grant.Role, Namespaces: slices.Clone(m.Grant.Namespaces)}
			byRole[m.Grant.Role] = &cp
			order = append(order, m.Grant.Role)
			continue
		}
		if len(g.Namespaces) == 0 {
			continue // already everywhere
		}
		if len(m.Grant.Namespaces) == 0 {
			g.Namespaces = nil
			continue
		}
		for _, ns := range m.Grant.Namespaces {
			if !slices.Contains(g.Namespaces, ns) {
				g.Namespaces = append(g.Namespaces, ns)
			}
		}
	}
	out := make([]Grant, 0, len(order))
	for _, r := range order {
		g := byRole[r]
		slices.Sort(g.Namespaces)
		out = append(out, *g)
	}
	return out
}
