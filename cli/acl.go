package cli

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// aclKinds are the kinds a rule may name (more as later kinds come).
var aclKinds = []string{"vm", "host", "policy", "cluster", "acl"}

// aclAccess are the access levels, weakest first.
var aclAccess = []string{"read", "power", "write", "admin"}

// aclTokenTypes are the types of 'kumoi acl token create --type'.
var aclTokenTypes = []string{client.ACLTokenClient, client.ACLTokenManagement, client.ACLTokenNode}

const aclRulesHelp = `RULES: --rule KIND:ACCESS[:SELECTOR], repeatable. KIND is vm, host, policy,
cluster or acl. ACCESS is one of
   read    get, list, watch and the events of that kind
   power   read, and the VM actions start, stop, reboot, suspend, resume, migrate
   write   power, and create, update, delete
   admin   everything on the kind, including its administration (cluster:admin
           removes Raft servers and reads /debug/pprof; host:admin may send any
           host's report; acl:admin manages tokens and policies)
SELECTOR (optional) narrows the rule to the objects whose labels match, in the
syntax of --selector: team=web, env!=prod, team=web,tier. A create must make
matching labels, an update must match before and after, a list shows only the
matching objects, and a get, action or delete of another object is refused.`

func aclCommand() *cli.Command {
	return &cli.Command{
		Name:      "acl",
		Usage:     "ACL tokens and policies: who may do what",
		UsageText: "kumoi acl <bootstrap|policy|token|whoami> [options] [arguments]",
		Description: `With ACLs on (the default of 'kumoi agent --controller'), every request but
GET /v1/status needs a token: send its secret with --token or KUMOI_TOKEN. A
request without a valid token is refused with 401, one that its token does not
allow with 403; nothing is written then.

A token is either a management token (everything), a client token (what its
ACL policies grant), or a node token (what a worker needs for its own host).
An ACL policy is a named list of rules, such as vm:read or vm:write:team=web.
(ACL policies are not the Starlark policies of 'kumoi policy'.)

Start by bootstrapping, once per cluster: it returns the first management
token. Keep its SecretID safe, then make policies and narrower tokens.

Examples:
   kumoi acl bootstrap                                     # once; prints the management token
   export KUMOI_TOKEN=<SecretID>
   kumoi acl policy create web-ops --rule vm:read --rule vm:write:team=web
   kumoi acl token create --policy web-ops --name ci       # prints its SecretID, once
   kumoi acl token create --type node --node hv-1          # for the worker of hv-1
   kumoi acl whoami
   kumoi acl token list
   kumoi acl token delete <AccessorID>                     # revokes it at once`,
		Subcommands: []*cli.Command{
			aclBootstrapCommand(),
			aclPolicyCommand(),
			aclTokenCommand(),
			aclWhoamiCommand(),
		},
	}
}

func aclBootstrapCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "bootstrap",
		Usage:     "create the first management token (once per cluster)",
		UsageText: "kumoi acl bootstrap [-o table|json|yaml]",
		Description: `Asks the cluster for its first management token and prints it, with its
secret (SecretID; secret_id in JSON). It needs no token and works once: after
that the cluster answers that ACLs are already bootstrapped. The cluster keeps
only a hash of the secret, so this is the only time it is shown: store it
safely, and use it with --token or KUMOI_TOKEN to create narrower tokens.
(A cluster started with --acl-initial-management has bootstrapped itself
with that secret.)

Examples:
   kumoi acl bootstrap
   kumoi acl bootstrap -o json | jq -r .secret_id > ~/.kumoi-management-token`,
		Action: aclBootstrap,
	})
}

func aclBootstrap(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	tok, err := s.client.ACL().Bootstrap(s.ctx)
	if err != nil {
		return s.fail(err)
	}
	return printToken(c, tok, true)
}

func aclWhoamiCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "whoami",
		Usage:     "show the token this command sends",
		UsageText: "kumoi acl whoami [-o table|json|yaml]",
		Description: `Shows the token given with --token or KUMOI_TOKEN as the cluster knows it:
accessor ID, name, type, policies (never its secret). Without a valid token it
fails with 401.

Examples:
   kumoi acl whoami
   KUMOI_TOKEN=$(cat ci.token) kumoi acl whoami -o json`,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			tok, err := s.client.ACL().Self(s.ctx)
			if err != nil {
				return s.fail(err)
			}
			return printToken(c, tok, false)
		},
	})
}

// ---- policies

func aclPolicyCommand() *cli.Command {
	return &cli.Command{
		Name:      "policy",
		Usage:     "manage ACL policies: named sets of rules that tokens refer to",
		UsageText: "kumoi acl policy <create|list|get|update|delete> [options] [NAME]",
		Description: `An ACL policy is a named list of rules; a client token is granted the union of
the rules of its policies. Changing a policy changes what every token that
names it may do, at once.

` + aclRulesHelp + `

Examples:
   kumoi acl policy create readonly --rule vm:read --rule host:read --rule cluster:read
   kumoi acl policy create web-ops --rule vm:write:team=web --description "web team VMs"
   kumoi acl policy list
   kumoi acl policy get web-ops
   kumoi acl policy update web-ops --rule vm:power:team=web
   kumoi acl policy delete web-ops`,
		Subcommands: []*cli.Command{
			aclPolicyCreateCommand(),
			aclPolicyListCommand(),
			aclPolicyGetCommand(),
			aclPolicyUpdateCommand(),
			aclPolicyDeleteCommand(),
		},
	}
}

func ruleFlag(usage string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: "rule", Usage: usage}
}

func descriptionFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "description", Usage: "free-text `TEXT` saying what the policy is for"}
}

func aclPolicyCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "create",
		Usage:     "create an ACL policy",
		UsageText: "kumoi acl policy create NAME --rule KIND:ACCESS[:SELECTOR] [--rule ...] [--description TEXT] [-o table|json|yaml]",
		Description: `Stores a new ACL policy with the rules given (at least one). The rules are
checked here before anything is sent.

` + aclRulesHelp + `

Examples:
   kumoi acl policy create readonly --rule vm:read --rule host:read --rule cluster:read
   kumoi acl policy create web-ops --rule vm:read --rule vm:write:team=web`,
		Flags: []cli.Flag{
			ruleFlag("grant `KIND:ACCESS[:SELECTOR]` (repeatable; at least one)"),
			descriptionFlag(),
		},
		Action: func(c *cli.Context) error {
			name, err := oneName(c, "ACL policy")
			if err != nil {
				return err
			}
			rules, err := parseRules(c.StringSlice("rule"))
			if err != nil {
				return err
			}
			if len(rules) == 0 {
				return usagef("missing --rule: a policy grants at least one rule, e.g. --rule vm:read")
			}
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			pol, err := s.client.ACL().Policies().Create(s.ctx, &client.ACLPolicy{
				Name: name, Description: c.String("description"), Rules: rules,
			})
			if err != nil {
				if client.IsConflict(err) {
					return fmt.Errorf("ACL policy %q already exists (change it with 'kumoi acl policy update')", name)
				}
				return s.fail(err)
			}
			return printACLPolicy(c, pol)
		},
	})
}

func aclPolicyUpdateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "update",
		Usage:     "change an ACL policy's rules or description",
		UsageText: "kumoi acl policy update NAME [--rule KIND:ACCESS[:SELECTOR] ...] [--description TEXT] [-o table|json|yaml]",
		Description: `Replaces what is given: the --rule flags replace all of the policy's rules
(give every rule it should have), --description replaces the description
(--description "" clears it). What is not given is kept. Every token that
names the policy gets the new rules at once.

` + aclRulesHelp + `

Examples:
   kumoi acl policy update web-ops --rule vm:read --rule vm:power:team=web
   kumoi acl policy update web-ops --description "web team: start and stop only"`,
		Flags: []cli.Flag{
			ruleFlag("grant `KIND:ACCESS[:SELECTOR]` (repeatable; replaces all rules)"),
			descriptionFlag(),
		},
		Action: func(c *cli.Context) error {
			name, err := oneName(c, "ACL policy")
			if err != nil {
				return err
			}
			rules, err := parseRules(c.StringSlice("rule"))
			if err != nil {
				return err
			}
			if !c.IsSet("rule") && !c.IsSet("description") {
				return usagef("nothing to change: give --rule (replaces all rules) or --description")
			}
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			pols := s.client.ACL().Policies()
			pol, _, err := pols.Get(s.ctx, name, nil)
			if err != nil {
				return s.fail(aclPolicyErr(name, err))
			}
			if c.IsSet("rule") {
				pol.Rules = rules
			}
			if c.IsSet("description") {
				pol.Description = c.String("description")
			}
			if pol, err = pols.Update(s.ctx, pol); err != nil {
				return s.fail(aclPolicyErr(name, err))
			}
			return printACLPolicy(c, pol)
		},
	})
}

func aclPolicyListCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list the ACL policies",
		UsageText: "kumoi acl policy list [-o table|json|yaml]",
		Description: `Lists the ACL policies by name: NAME, RULES (separated by ";"), INDEX (the
modify_index) and DESCRIPTION. -o json or -o yaml prints the policies as the
API returns them.

Examples:
   kumoi acl policy list
   kumoi acl policy list -o json | jq -r '.[].name'`,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			pols, _, err := s.client.ACL().Policies().List(s.ctx, nil)
			if err != nil {
				return s.fail(err)
			}
			slices.SortFunc(pols, func(a, b *client.ACLPolicy) int { return strings.Compare(a.Name, b.Name) })
			if done, err := printData(c, pols); done {
				return err
			}
			t := newFreeTextTable(c.App.Writer, "NAME", "RULES", "INDEX", "DESCRIPTION")
			for _, p := range pols {
				t.row(p.Name, rulesText(p.Rules, ";"), uintCell(p.ModifyIndex), shorten(p.Description, reasonWidth))
			}
			return t.flush()
		},
	})
}

func aclPolicyGetCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "get",
		Usage:     "show one ACL policy",
		UsageText: "kumoi acl policy get NAME [-o table|json|yaml]",
		Description: `Shows an ACL policy: its description and its rules, one a line. -o json or
-o yaml prints the policy as the API returns it.

Examples:
   kumoi acl policy get web-ops
   kumoi acl policy get web-ops -o json`,
		Action: func(c *cli.Context) error {
			name, s, err := connectNamed(c, "ACL policy")
			if err != nil {
				return err
			}
			defer s.close()
			pol, _, err := s.client.ACL().Policies().Get(s.ctx, name, nil)
			if err != nil {
				return s.fail(aclPolicyErr(name, err))
			}
			return printACLPolicy(c, pol)
		},
	})
}

func aclPolicyDeleteCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "delete",
		Aliases:   []string{"rm"},
		Usage:     "delete an ACL policy",
		UsageText: "kumoi acl policy delete NAME",
		Description: `Deletes an ACL policy. The tokens that name it keep their other policies and
lose what this one granted, at once. Prints a line saying so.

Examples:
   kumoi acl policy delete web-ops`,
		Action: func(c *cli.Context) error {
			name, s, err := connectNamed(c, "ACL policy")
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.client.ACL().Policies().Delete(s.ctx, name); err != nil {
				return s.fail(aclPolicyErr(name, err))
			}
			_, err = fmt.Fprintf(c.App.Writer, "ACL policy %q deleted\n", name)
			return err
		},
	})
}

func aclPolicyErr(name string, err error) error {
	if client.IsNotFound(err) {
		return fmt.Errorf("ACL policy %q not found", name)
	}
	return err
}

// parseRules parses --rule values, refusing any that is not
// KIND:ACCESS[:SELECTOR] with a known kind and access level.
func parseRules(vals []string) ([]client.ACLRule, error) {
	var rules []client.ACLRule
	for _, v := range vals {
		r, err := parseRule(v)
		if err != nil {
			return nil, err
		}
		if slices.Contains(rules, r) {
			return nil, usagef("--rule %s given twice", v)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(v string) (client.ACLRule, error) {
	parts := strings.SplitN(strings.TrimSpace(v), ":", 3)
	if len(parts) < 2 {
		return client.ACLRule{}, usagef("invalid --rule %q: write KIND:ACCESS[:SELECTOR], e.g. --rule vm:read or --rule vm:write:team=web", v)
	}
	kind, access := strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1])
	if !slices.Contains(aclKinds, kind) {
		if _, known := resource.Lookup(resource.Kind(kind)); !known || kind == "" {
			return client.ACLRule{}, usagef("invalid --rule %q: unknown kind %q; use %s", v, kind, joinList(aclKinds, "or"))
		}
	}
	if !slices.Contains(aclAccess, access) {
		return client.ACLRule{}, usagef("invalid --rule %q: unknown access %q; use %s", v, access, joinList(aclAccess, "or"))
	}
	r := client.ACLRule{Kind: resource.Kind(kind), Access: access}
	if len(parts) == 3 {
		r.Selector = strings.TrimSpace(parts[2])
		if r.Selector == "" {
			return client.ACLRule{}, usagef("invalid --rule %q: the selector after the second colon is empty; leave the colon out to grant %s on every %s", v, access, kind)
		}
		if _, err := resource.ParseSelector(r.Selector); err != nil {
			return client.ACLRule{}, usagef("invalid --rule %q: %v", v, err)
		}
	}
	return r, nil
}

func ruleText(r client.ACLRule) string {
	s := string(r.Kind) + ":" + r.Access
	if r.Selector != "" {
		s += ":" + r.Selector
	}
	return s
}

func rulesText(rules []client.ACLRule, sep string) string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = ruleText(r)
	}
	return strings.Join(out, sep)
}

// printACLPolicy renders one policy: the API object in JSON/YAML, or its
// details.
func printACLPolicy(c *cli.Context, pol *client.ACLPolicy) error {
	if pol.Rules == nil {
		pol.Rules = []client.ACLRule{}
	}
	if done, err := printData(c, pol); done {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Name:         %s\n", pol.Name)
	fmt.Fprintf(w, "Description:  %s\n", cmp.Or(textCell(pol.Description), "-"))
	if len(pol.Rules) == 0 {
		fmt.Fprintln(w, "Rules:        -")
	}
	for i, r := range pol.Rules {
		label := "Rules:"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%-14s%s\n", label, ruleText(r))
	}
	_, err := fmt.Fprintf(w, "Index:        %d (created at %d)\n", pol.ModifyIndex, pol.CreateIndex)
	return err
}

// ---- tokens

func aclTokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "manage ACL tokens",
		UsageText: "kumoi acl token <create|list|get|delete> [options] [ACCESSOR]",
		Description: `A token has a public accessor ID, which names it in lists, events and the
modified_by of objects, and a secret ID, which is what a client sends (--token,
KUMOI_TOKEN) and which the cluster stores only as a hash: it is shown once,
when the token is created.

Types: client (the rules of its --policy policies), management (everything),
node (a worker's: it may report on its own --node host and read the VMs placed
there, nothing else).

Examples:
   kumoi acl token create --policy web-ops --name ci
   kumoi acl token create --type node --node hv-1 -o json | jq -r .secret_id
   kumoi acl token list
   kumoi acl token get <AccessorID>
   kumoi acl token delete <AccessorID>`,
		Subcommands: []*cli.Command{
			aclTokenCreateCommand(),
			aclTokenListCommand(),
			aclTokenGetCommand(),
			aclTokenDeleteCommand(),
		},
	}
}

func aclTokenCreateCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "create",
		Usage:     "create an ACL token and print its secret",
		UsageText: "kumoi acl token create [--policy NAME ...] [--name NAME] [--type client|management|node] [--node HOST] [-o table|json|yaml]",
		Description: `Creates a token and prints it with its secret (SecretID; secret_id in JSON),
which the cluster does not keep: this is the only time it is shown.

--type client (the default) needs at least one --policy: the token may do what
those ACL policies grant (policies created later under those names count too).
--type node needs --node HOST and no --policy: the token of the worker of HOST.
--type management may do everything; give it sparingly.

Examples:
   kumoi acl token create --policy web-ops --name ci
   kumoi acl token create --policy readonly --policy web-ops --name alice
   kumoi acl token create --type node --node hv-1 --name worker-hv-1
   kumoi acl token create --type management --name break-glass -o json`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "policy", Usage: "grant the rules of ACL policy `NAME` (repeatable)"},
			&cli.StringFlag{Name: "name", Usage: "a `NAME` saying whose or what the token is"},
			&cli.StringFlag{Name: "type", Usage: "token `TYPE`: client, management or node", Value: client.ACLTokenClient},
			&cli.StringFlag{Name: "node", Usage: "the `HOST` whose worker a node token is for (with --type node)"},
		},
		Action: aclTokenCreate,
	})
}

func aclTokenCreate(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	req := client.ACLTokenRequest{Name: c.String("name"), Type: c.String("type"), Node: c.String("node")}
	if err := checkChoice("type", req.Type, aclTokenTypes...); err != nil {
		return err
	}
	for _, p := range c.StringSlice("policy") {
		p = strings.TrimSpace(p)
		if p == "" {
			return usagef("--policy is empty: give the name of an ACL policy")
		}
		if slices.Contains(req.Policies, p) {
			return usagef("--policy %s given twice", p)
		}
		req.Policies = append(req.Policies, p)
	}
	switch {
	case req.Type == client.ACLTokenNode && req.Node == "":
		return usagef("--type node needs --node HOST: the host whose worker uses the token")
	case req.Type != client.ACLTokenNode && c.IsSet("node"):
		return usagef("--node is for --type node only")
	case req.Type == client.ACLTokenClient && len(req.Policies) == 0:
		return usagef("missing --policy: a client token may do only what its ACL policies grant (see 'kumoi acl policy list')")
	case req.Type != client.ACLTokenClient && len(req.Policies) > 0:
		return usagef("--policy is for client tokens: a %s token's rights are fixed by its type", req.Type)
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	tok, err := s.client.ACL().Tokens().Create(s.ctx, req)
	if err != nil {
		return s.fail(err)
	}
	return printToken(c, tok, true)
}

func aclTokenListCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list the ACL tokens (never their secrets)",
		UsageText: "kumoi acl token list [-o table|json|yaml]",
		Description: `Lists the tokens: ACCESSOR (the accessor ID), NAME, TYPE, POLICIES, NODE and
AGE. Secrets are never listed: the cluster does not have them. -o json or
-o yaml prints the tokens as the API returns them.

Examples:
   kumoi acl token list
   kumoi acl token list -o json | jq -r '.[] | select(.type=="node") | .accessor_id'`,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			toks, _, err := s.client.ACL().Tokens().List(s.ctx, nil)
			if err != nil {
				return s.fail(err)
			}
			for _, t := range toks {
				t.SecretID = "" // never listed, whatever a server sends
			}
			if done, err := printData(c, toks); done {
				return err
			}
			t := newTable(c.App.Writer, "ACCESSOR", "NAME", "TYPE", "POLICIES", "NODE", "AGE")
			for _, tok := range toks {
				t.row(tok.AccessorID, tok.Name, tok.Type, strings.Join(tok.Policies, ","), tok.Node, ageCell(tok.CreateTime))
			}
			return t.flush()
		},
	})
}

func aclTokenGetCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "get",
		Usage:     "show one ACL token (never its secret)",
		UsageText: "kumoi acl token get ACCESSOR [-o table|json|yaml]",
		Description: `Shows the token with that accessor ID: name, type, policies, node, creation
time. -o json or -o yaml prints the token as the API returns it.

Examples:
   kumoi acl token get 0b6c3f0e-5d2a-4b8e-9c1d-2f3a4b5c6d7e`,
		Action: func(c *cli.Context) error {
			accessor, s, err := connectNamed(c, "ACL token accessor")
			if err != nil {
				return err
			}
			defer s.close()
			tok, _, err := s.client.ACL().Tokens().Get(s.ctx, accessor, nil)
			if err != nil {
				return s.fail(aclTokenErr(accessor, err))
			}
			return printToken(c, tok, false)
		},
	})
}

func aclTokenDeleteCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "delete",
		Aliases:   []string{"rm"},
		Usage:     "revoke an ACL token",
		UsageText: "kumoi acl token delete ACCESSOR",
		Description: `Deletes the token with that accessor ID: its secret stops working at once.
Prints a line saying so.

Examples:
   kumoi acl token delete 0b6c3f0e-5d2a-4b8e-9c1d-2f3a4b5c6d7e`,
		Action: func(c *cli.Context) error {
			accessor, s, err := connectNamed(c, "ACL token accessor")
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.client.ACL().Tokens().Delete(s.ctx, accessor); err != nil {
				return s.fail(aclTokenErr(accessor, err))
			}
			_, err = fmt.Fprintf(c.App.Writer, "ACL token %s deleted\n", accessor)
			return err
		},
	})
}

func aclTokenErr(accessor string, err error) error {
	if client.IsNotFound(err) {
		return fmt.Errorf("ACL token %q not found (give its accessor ID, as 'kumoi acl token list' shows it)", accessor)
	}
	return err
}

// printToken renders one token: the API object in JSON/YAML, or its
// details. The secret is printed only when withSecret (the answers of
// bootstrap and token create, where the user asked for it).
func printToken(c *cli.Context, tok *client.ACLToken, withSecret bool) error {
	if !withSecret {
		tok.SecretID = ""
	}
	if done, err := printData(c, tok); done {
		return err
	}
	return tokenDetail(c.App.Writer, tok)
}

func tokenDetail(w io.Writer, tok *client.ACLToken) error {
	fmt.Fprintf(w, "AccessorID:  %s\n", tok.AccessorID)
	if tok.SecretID != "" {
		fmt.Fprintf(w, "SecretID:    %s\n", tok.SecretID)
	}
	fmt.Fprintf(w, "Name:        %s\n", cmp.Or(textCell(tok.Name), "-"))
	fmt.Fprintf(w, "Type:        %s\n", tok.Type)
	fmt.Fprintf(w, "Policies:    %s\n", cmp.Or(strings.Join(tok.Policies, ", "), "-"))
	if tok.Node != "" {
		fmt.Fprintf(w, "Node:        %s\n", tok.Node)
	}
	created := "-"
	if !tok.CreateTime.IsZero() {
		created = fmt.Sprintf("%s (%s ago)", tok.CreateTime.UTC().Format(time.RFC3339), ageCell(tok.CreateTime))
	}
	fmt.Fprintf(w, "Created:     %s, index %d\n", created, tok.CreateIndex)
	if tok.SecretID != "" {
		fmt.Fprintln(w, "\nThe secret is shown only now: the cluster keeps a hash of it. Send it with\n--token or KUMOI_TOKEN.")
	}
	return nil
}
