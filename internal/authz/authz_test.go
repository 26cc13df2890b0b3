package authz

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCan(t *testing.T) {
	p := &Principal{Name: "ada", Grants: []Grant{
		{Role: Viewer},
		{Role: Operator, Namespaces: []string{"finance"}},
	}}
	tests := []struct {
		name string
		perm Permission
		ns   string
		want bool
	}{
		{"viewer sees every namespace", ViewAgents, "hr", true},
		{"viewer sees the whole fleet", ViewAgents, "", true},
		{"operator suspends in its namespace", SuspendAgents, "finance", true},
		{"operator rotates in its namespace", RotateCredentials, "finance", true},
		{"operator does not suspend elsewhere", SuspendAgents, "hr", false},
		{"scoped grant does not cover every namespace", SuspendAgents, "", false},
		{"operator cannot revoke", RevokeAgents, "finance", false},
		{"operator cannot register", RegisterAgents, "finance", false},
		{"nobody here approves", ApproveElevation, "finance", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Can(tt.perm, tt.ns); got != tt.want {
				t.Errorf("Can(%q, %q) = %v, want %v", tt.perm, tt.ns, got, tt.want)
			}
		})
	}
	if !BootstrapAdmin().Can(Decommission, "") || BootstrapAdmin().Can(ApproveElevation, "x") {
		t.Error("the bootstrap admin must hold every admin permission and nothing reserved")
	}
	var nilP *Principal
	if nilP.Can(ViewAgents, "") {
		t.Error("a nil principal can do nothing")
	}
}

func TestScope(t *testing.T) {
	p := &Principal{Grants: []Grant{{Role: Operator, Namespaces: []string{"b", "a"}}, {Role: Viewer, Namespaces: []string{"c"}}}}
	all, ns := p.Scope(ViewAgents)
	if all || !reflect.DeepEqual(ns, []string{"a", "b", "c"}) {
		t.Errorf("Scope(view) = %v %v", all, ns)
	}
	all, ns = p.Scope(RevokeAgents)
	if all || len(ns) != 0 {
		t.Errorf("Scope(revoke) = %v %v, want nowhere", all, ns)
	}
	if all, _ := BootstrapAdmin().Scope(ViewAgents); !all {
		t.Error("admin sees everything")
	}
}

func TestCheck(t *testing.T) {
	if err := Check(context.Background(), ViewAgents, ""); !errors.As(err, new(UnauthenticatedError)) {
		t.Errorf("no principal: %v", err)
	}
	ctx := WithPrincipal(context.Background(), &Principal{Name: "bob", Grants: []Grant{{Role: Viewer}}})
	err := Check(ctx, SuspendAgents, "finance")
	var de *DeniedError
	if !errors.As(err, &de) || de.Detail() != `bob may not suspend and resume agents in namespace "finance"` {
		t.Errorf("denial = %v", err)
	}
	if err := Check(ctx, ViewAgents, "finance"); err != nil {
		t.Error(err)
	}
}

func TestParseMappings(t *testing.T) {
	m, err := ParseMappings(" Lanyard.Admin=admin, finance-platform=operator:finance|payments ,all=viewer,")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		{"Lanyard.Admin", Grant{Role: Admin}},
		{"finance-platform", Grant{Role: Operator, Namespaces: []string{"finance", "payments"}}},
		{"all", Grant{Role: Viewer}},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %+v", m)
	}
	for _, bad := range []string{"x", "=admin", "x=root", "x=operator:", "x=operator:|"} {
		if _, err := ParseMappings(bad); err == nil {
			t.Errorf("ParseMappings(%q) accepted", bad)
		}
	}
	if _, err := ParseMappings("a=root,b"); err == nil || !contains(err.Error(), `"a=root"`) || !contains(err.Error(), `"b"`) {
		t.Errorf("every problem must be reported: %v", err)
	}
}

func TestResolve(t *testing.T) {
	m, _ := ParseMappings("fin=operator:finance,pay=operator:payments,ops=operator,all=viewer,adm=admin")
	tests := []struct {
		name   string
		values []string
		want   []Grant
	}{
		{"none", []string{"other"}, []Grant{}},
		{"scoped merge", []string{"pay", "fin"}, []Grant{{Role: Operator, Namespaces: []string{"finance", "payments"}}}},
		{"unscoped wins", []string{"fin", "ops"}, []Grant{{Role: Operator}}},
		{"several roles", []string{"all", "fin"}, []Grant{{Role: Operator, Namespaces: []string{"finance"}}, {Role: Viewer}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Resolve(m, tt.values); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
