package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestConsoleFiles: /ui/ serves the embedded console without a token (ACLs
// on), with a CSP that allows only its own script and styles; /ui and a
// browser at / are sent to /ui/ (an API client at / still gets the API's
// 404); anything but GET and HEAD is refused.
func TestConsoleFiles(t *testing.T) {
	e := newHTTPEnv(t, "n1", httpEnvOpts{acl: true})
	for path, want := range map[string]string{"/ui/": "<script src=\"app.js\" defer></script>", "/ui/app.js": "GET /v1/events", "/ui/app.css": "prefers-color-scheme"} {
		r := e.call(t, "GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), want) {
			t.Errorf("%s lacks %q", path, want)
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if r.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", path, r.header.Get("X-Frame-Options"))
		}
	}
	// (The test's client follows the redirect to the console.)
	for path, hdr := range map[string][]string{"/ui": nil, "/": {"Accept", "text/html"}} {
		r := e.call(t, "GET", path, nil, hdr...)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "<title>Kumoi console</title>") {
			t.Errorf("GET %s: %d, not redirected to the console", path, r.status)
		}
	}
	if r := e.call(t, "GET", "/", nil); r.status != http.StatusNotFound {
		t.Errorf("GET / as an API client: %d, want the API's 404", r.status)
	}
	if r := e.call(t, "GET", "/ui/nope.js", nil); r.status != http.StatusNotFound {
		t.Errorf("a missing file: %d", r.status)
	}
	if r := e.call(t, "POST", "/ui/", "x"); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/: %d", r.status)
	}
}
