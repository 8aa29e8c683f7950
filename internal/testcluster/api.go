package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// NewHTTPClient returns a client for talking to nodes directly: no proxy,
// keep-alive connections (at least maxConnsPerHost idle ones per node, so
// that concurrent clients do not keep opening sockets), and timeout on
// every request (0 = none; use a context then). It sends ManagementToken
// and trusts the test CA (clusters with Options.TLS).
func NewHTTPClient(maxConnsPerHost int, timeout time.Duration) *http.Client {
	return NewHTTPClientToken(maxConnsPerHost, timeout, ManagementToken)
}

// NewHTTPClientToken is NewHTTPClient with another ACL token ("" sends
// none).
func NewHTTPClientToken(maxConnsPerHost int, timeout time.Duration, token string) *http.Client {
	if maxConnsPerHost < 2 {
		maxConnsPerHost = 2
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     &tokenTransport{token: token, base: NewTransport(maxConnsPerHost)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// NewTransport is the transport of NewHTTPClient's clients, without the
// token: for an SDK client that sends its own (client.Config.Token), as
// one on request streams must (client.Config.Stream needs an
// *http.Transport).
func NewTransport(maxConnsPerHost int) *http.Transport {
	if maxConnsPerHost < 2 {
		maxConnsPerHost = 2
	}
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   2 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        4 * maxConnsPerHost,
		MaxIdleConnsPerHost: maxConnsPerHost,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     clientTLS(),
	}
}

// Response is a whole HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// APIError decodes the {"error": {...}} body of a non-2xx answer; nil if
// the body is not one.
func (r *Response) APIError() *resource.ErrorBody {
	var e resource.ErrorResponse
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error.Code == "" {
		return nil
	}
	return &e.Error
}

// Decode unmarshals the body into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %d answer %q: %w", r.Status, truncate(r.Body, 200), err)
	}
	return nil
}

// String is a short form for test messages: the status and the body.
func (r *Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, truncate(bytes.TrimSpace(r.Body), 300))
}

// Do sends one request with body (nil for none) and reads the whole answer.
// An error means no HTTP answer was received (connection refused or reset,
// timeout): for a write, the outcome is unknown.
func Do(ctx context.Context, hc *http.Client, method, url string, body []byte) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil || method == http.MethodPost || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// GetJSON GETs url and decodes a 200 answer into v.
func GetJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	r, err := Do(ctx, hc, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, r)
	}
	return r.Decode(v)
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
