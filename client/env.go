package client

import (
	"os"
	"strings"
)

// Environment variables read by ConfigFromEnv (and by the kumoi command
// line, as the defaults of its global flags).
const (
	// EnvAddr: controller addresses, comma-separated ("10.0.0.1:7400,10.0.0.2:7400").
	EnvAddr = "KUMOI_ADDR"
	// EnvToken: the secret of the ACL token to send (Config.Token).
	EnvToken = "KUMOI_TOKEN"
)

// ConfigFromEnv returns a Config filled from the environment: Addrs from
// KUMOI_ADDR (comma-separated; unset or empty means DefaultAddr) and Token
// from KUMOI_TOKEN. Fields that no variable sets keep their zero value, so
// the caller may set them (or override these) before calling New:
//
//	cfg, err := client.ConfigFromEnv()
//	if err != nil { ... }
//	cfg.UserAgent = "my-tool/1.0"
//	c, err := client.New(cfg)
//
// It fails when a variable's value is unusable (an address that is not a
// URL); the error names the variable and never repeats a secret.
func ConfigFromEnv() (Config, error) {
	return configFromLookup(os.LookupEnv)
}

// configFromLookup is ConfigFromEnv reading variables through lookup, so
// that tests need not change the process environment. Each variable is
// read by one step below; add a step for a new one.
func configFromLookup(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	if v, ok := lookup(EnvAddr); ok {
		for _, a := range strings.Split(v, ",") {
			if strings.TrimSpace(a) == "" {
				continue
			}
			norm, err := NormalizeAddr(a)
			if err != nil {
				return Config{}, envError(EnvAddr, err)
			}
			cfg.Addrs = append(cfg.Addrs, norm)
		}
	}
	if v, ok := lookup(EnvToken); ok {
		cfg.Token = strings.TrimSpace(v)
	}
	// TLS (KUMOI_CACERT, KUMOI_CLIENT_CERT, KUMOI_CLIENT_KEY) is read
	// here too, into Config.TLS.
	return cfg, nil
}

type envVarError struct {
	name string
	err  error
}

func (e *envVarError) Error() string { return "$" + e.name + ": " + e.err.Error() }
func (e *envVarError) Unwrap() error { return e.err }

func envError(name string, err error) error { return &envVarError{name: name, err: err} }
