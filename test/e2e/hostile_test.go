package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/internal/testcluster"
	"github.com/kumoi/kumoi/resource"
)

// TestHostileInput sends the hostile requests of issue 12 to a real
// one-controller cluster: each gets a JSON error naming what is wrong, and
// nothing is written.
func TestHostileInput(t *testing.T) {
	c := newCluster(t, testcluster.Options{Controllers: 1})
	hc := httpClient()
	c.WaitLeader(leaderTimeout)
	before := waitSameEverywhere(t, c, hc)
	const bad = resource.CodeInvalidArgument
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, mention            string
	}{
		{"NAME folds no more", "POST", "/v1/vms", `{"name":"a","NAME":"b","spec":{"cpus":1,"memory_mib":64}}`, 400, bad, "NAME"},
		{"SPEC and CPUS", "POST", "/v1/vms", `{"name":"a","SPEC":{"CPUS":1}}`, 400, bad, "SPEC"},
		{"Kelvin sign", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":64},"labels":{},"\u212aind":"vm"}`, 400, bad, "\u212aind"},
		{"duplicate key", "POST", "/v1/vms", `{"name":"a","name":"b","spec":{"cpus":1,"memory_mib":64}}`, 400, bad, "name"},
		{"unknown boot field", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":64,"boot":{"zzz":1}}}`, 400, bad, "spec.boot.zzz"},
		{"NUL in boot image", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":64,"boot":{"image":"/a\u0000b"}}}`, 400, bad, "spec.boot.image"},
		{"huge cmdline", "POST", "/v1/vms", `{"name":"a","spec":{"cpus":1,"memory_mib":64,"boot":{"kernel":"/k","cmdline":"` + strings.Repeat("x", 900<<10) + `"}}}`, 400, bad, "spec.boot.cmdline"},
		{"RLO in label", "POST", "/v1/vms", `{"name":"a","labels":{"k":"\u202e"},"spec":{"cpus":1,"memory_mib":64}}`, 400, bad, "labels.k"},
		{"invalid UTF-8", "POST", "/v1/vms", "{\"name\":\"a\",\"labels\":{\"k\":\"\xff\"},\"spec\":{\"cpus\":1,\"memory_mib\":64}}", 400, bad, "UTF-8"},
		{"explicit zero overcommit", "POST", "/v1/hosts", `{"name":"h","spec":{"cpu_overcommit":0}}`, 400, bad, "spec.cpu_overcommit"},
		{"explicit zero max_steps", "POST", "/v1/policies", `{"name":"p","spec":{"source":"events = []\ndef on_event(ev):\n  pass\n","max_steps":0}}`, 400, bad, "spec.max_steps"},
		{"remove the only controller", "DELETE", "/v1/cluster/servers/" + url.PathEscape(c.ID(0)), "", 409, resource.CodeConflict, "only voting controller"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r, err := do(hc, tc.method, c.URL(0)+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			wantAPIError(t, tc.name, r, tc.status, []string{tc.code}, tc.mention)
		})
	}

	addr := strings.TrimPrefix(c.URL(0), "http://")
	raw := func(t *testing.T, req string) (*http.Response, resource.ErrorBody) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(requestTimeout))
		go func() { _, _ = io.WriteString(conn, req) }()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var er resource.ErrorResponse
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &er); err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("not a JSON error (%s): %v: %s", resp.Header.Get("Content-Type"), err, b)
		}
		return resp, er.Error
	}
	t.Run("%ZZ in a path", func(t *testing.T) {
		resp, eb := raw(t, "GET /v1/vms/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 400 || eb.Code != bad {
			t.Errorf("%d %+v", resp.StatusCode, eb)
		}
	})
	t.Run("headers too large", func(t *testing.T) {
		resp, eb := raw(t, "GET /v1/vms HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", 2<<20)+"\r\n\r\n")
		if resp.StatusCode != 431 || eb.Code != resource.CodeHeadersTooLarge {
			t.Errorf("%d %+v", resp.StatusCode, eb)
		}
	})
	t.Run("form POST", func(t *testing.T) {
		body := `{"name":"form","spec":{"cpus":1,"memory_mib":64}}`
		// With a valid token: the content type alone is refused.
		resp, eb := raw(t, "POST /v1/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testcluster.ManagementToken+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
		if resp.StatusCode != 415 || eb.Code != resource.CodeUnsupportedMediaType {
			t.Errorf("%d %+v", resp.StatusCode, eb)
		}
	})
	after := waitSameEverywhere(t, c, hc)
	if d := diff(before, after); d != "" {
		t.Errorf("hostile requests changed the state: %s", d)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
