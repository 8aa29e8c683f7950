package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAgentConfigRedacted checks the configuration GET /v1/agent/self
// shows: every visible agent flag under its name, durations and lists
// readable, and the secrets (--token, --acl-initial-management,
// --encrypt, --fence-command, a URI's password) never, only whether they
// are set.
func TestAgentConfigRedacted(t *testing.T) {
	const secret = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	cfg, stderr, code := agentConfig(t, "--controller", "--token", secret, "--acl-initial-management", secret,
		"--encrypt", "cZ2vpHYD1SkGhbgFVaPydZR8ISxCKv3U6tR3nANz7Rs=", "--join", "10.0.0.1:7946", "--join", "10.0.0.2:7946",
		"--heartbeat-timeout", "300ms", "--fence-command", "fence_ipmilan --password "+secret, "--migration-uri", "qemu+tcp://admin:"+secret+"@10.0.0.1/system")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := json.Marshal(cfg.AgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	if strings.Contains(js, secret) || strings.Contains(js, "cZ2vpHYD") {
		t.Fatalf("a secret shows: %s", js)
	}
	for _, want := range []string{`"token":"\u003credacted\u003e"`, `"acl-initial-management":"\u003credacted\u003e"`, `"encrypt":"\u003credacted\u003e"`,
		`"join":["10.0.0.1:7946","10.0.0.2:7946"]`, `"heartbeat-timeout":"300ms"`, `"controller":true`, `"api-port":7400`,
		`"fence-command":"\u003credacted\u003e"`, `"migration-uri":"qemu+tcp://admin:redacted@10.0.0.1/system"`} {
		if !strings.Contains(js, want) {
			t.Errorf("config lacks %s: %s", want, js)
		}
	}
	cfg, _, _ = agentConfig(t, "--controller")
	if v := cfg.AgentConfig["token"]; v != "" {
		t.Errorf("an unset secret shows as %q, want empty", v)
	}
}
