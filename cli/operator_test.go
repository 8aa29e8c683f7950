package cli

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestGossipKeygen: a fresh 32-byte key, base64, each time; -o json
// prints {"key": ...}.
func TestGossipKeygen(t *testing.T) {
	out, stderr, code := runCLI(t, "operator", "gossip", "keygen")
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if code != 0 || stderr != "" || err != nil || len(k) != 32 {
		t.Fatalf("keygen: exit %d, stdout %q, stderr %q: want base64 of 32 bytes", code, out, stderr)
	}
	out2, _, _ := runCLI(t, "operator", "gossip", "keygen")
	if out2 == out {
		t.Fatal("two keygens printed the same key")
	}
	js, _, code := runCLI(t, "operator", "gossip", "keygen", "-o", "json")
	var v struct{ Key string }
	if code != 0 || json.Unmarshal([]byte(js), &v) != nil || len(v.Key) != 44 {
		t.Fatalf("keygen -o json: exit %d, %q", code, js)
	}
	if _, _, code := runCLI(t, "operator", "gossip", "keygen", "extra"); code != exitUsage {
		t.Fatalf("keygen with an argument: exit %d, want %d", code, exitUsage)
	}
}

// TestAgentEncryptFlag: --encrypt (repeatable, comma-separated) and
// KUMOI_GOSSIP_KEY reach the controller's gossip keyring in order; a bad
// key stops the agent at once with a usage error naming it by position.
func TestAgentEncryptFlag(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("a", 32)))
	k2 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("b", 16)))
	k3 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("c", 24)))
	cfg, stderr, code := agentConfig(t, "--controller", "--encrypt", k1, "--encrypt", k2+","+k3)
	keys := cfg.GossipSecurity.Keys
	if code != 0 || len(keys) != 3 || keys[0][0] != 'a' || keys[1][0] != 'b' || keys[2][0] != 'c' {
		t.Fatalf("--encrypt: exit %d (%s), keys %q: want a, b, c in order", code, stderr, keys)
	}
	t.Setenv("KUMOI_GOSSIP_KEY", k2)
	if cfg, _, code = agentConfig(t, "--controller"); code != 0 || len(cfg.GossipSecurity.Keys) != 1 || cfg.GossipSecurity.Keys[0][0] != 'b' {
		t.Fatalf("KUMOI_GOSSIP_KEY: exit %d, keys %q", code, cfg.GossipSecurity.Keys)
	}
	t.Setenv("KUMOI_GOSSIP_KEY", "")

	short := base64.StdEncoding.EncodeToString([]byte("short"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--controller", "--node-id", "c1", "--data-dir", t.TempDir(), "--encrypt", "not-base64!"}, "--encrypt key 1 is not base64"},
		{[]string{"agent", "--worker", "--node-id", "h1", "--encrypt", k1 + "," + short}, "--encrypt key 2 decodes to 5 bytes"},
	} {
		_, stderr, code := runCLI(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("kumoi %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, exitUsage, tc.want)
		}
	}
}
