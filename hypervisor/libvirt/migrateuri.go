package libvirt

// The migration URI (hypervisor.Migrator's uri: what PrepareIncoming
// returns on the target and MigrateOut takes on the source) and the
// driver's migration options. Pure functions: no libvirt needed.

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// MaxMigrationURI bounds the URI PrepareIncoming returns (the cluster's
// migration event carries it).
const MaxMigrationURI = 1024

// migrationTarget is what the target tells the source, encoded as
//
//	<libvirt URI>#<fragment>
//
// where the libvirt URI is the one the source's libvirtd connects to for a
// peer-to-peer migration (Options.MigrationURI) and the fragment is in URL
// query syntax:
//
//	migrate=<tcp://ADDR[:PORT]>  where the QEMU data stream goes
//	                             (Options.MigrationAddress; absent: libvirt
//	                             picks, from the target's qemu.conf
//	                             migration_host or hostname)
//	listen=<IP>                  the address the target listens on for
//	                             it (and for a storage copy's NBD
//	                             server): the migrate URI's host when it
//	                             is an IP address (absent: libvirt's
//	                             qemu.conf migration_address, by default
//	                             every address)
//	backing=1                    every volume of the domain on the target
//	                             is a qcow2 overlay whose backing file
//	                             exists there: an incremental storage copy
//	                             (the top layer) suffices
//
// e.g. qemu+tcp://hv2/system#backing=1&migrate=tcp%3A%2F%2F10.0.0.2. The
// '#' is always there (the fragment may be empty), so the last '#' is the
// separator whatever the libvirt URI holds. Unknown keys are ignored (a
// newer target may say more).
type migrationTarget struct {
	LibvirtURI string
	DataURI    string
	Listen     string
	Backing    bool
}

func (t migrationTarget) encode() (string, error) {
	if err := checkMigrationURI(t.LibvirtURI); err != nil {
		return "", err
	}
	v := url.Values{}
	if t.DataURI != "" {
		n, err := normalMigrationAddress(t.DataURI)
		if err != nil {
			return "", err
		}
		v.Set("migrate", n)
	}
	if t.Listen != "" {
		if net.ParseIP(t.Listen) == nil {
			return "", fmt.Errorf("migration listen address %q: not an IP address", t.Listen)
		}
		v.Set("listen", t.Listen)
	}
	if t.Backing {
		v.Set("backing", "1")
	}
	s := t.LibvirtURI + "#" + v.Encode()
	if len(s) > MaxMigrationURI {
		return "", fmt.Errorf("migration URI is %d bytes, more than %d", len(s), MaxMigrationURI)
	}
	return s, nil
}

// decodeMigrationTarget is the inverse of encode.
func decodeMigrationTarget(s string) (migrationTarget, error) {
	if len(s) > MaxMigrationURI {
		return migrationTarget{}, fmt.Errorf("migration URI is %d bytes, more than %d", len(s), MaxMigrationURI)
	}
	var t migrationTarget
	frag := ""
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		t.LibvirtURI, frag = s[:i], s[i+1:]
	} else {
		t.LibvirtURI = s
	}
	if err := checkMigrationURI(t.LibvirtURI); err != nil {
		return migrationTarget{}, fmt.Errorf("migration URI %q: %w", s, err)
	}
	v, err := url.ParseQuery(frag)
	if err != nil {
		return migrationTarget{}, fmt.Errorf("migration URI %q: fragment: %w", s, err)
	}
	if d := v.Get("migrate"); d != "" {
		if t.DataURI, err = normalMigrationAddress(d); err != nil {
			return migrationTarget{}, fmt.Errorf("migration URI %q: %w", s, err)
		}
	}
	if l := v.Get("listen"); l != "" {
		if net.ParseIP(l) == nil {
			return migrationTarget{}, fmt.Errorf("migration URI %q: listen=%q: not an IP address", s, l)
		}
		t.Listen = l
	}
	switch b := v.Get("backing"); b {
	case "", "0":
	case "1":
		t.Backing = true
	default:
		return migrationTarget{}, fmt.Errorf("migration URI %q: backing=%q: want 1 or 0", s, b)
	}
	return t, nil
}

// checkMigrationURI accepts a libvirt QEMU URI another host's libvirtd can
// connect to: with a host (qemu+tcp://HOST/system, qemu+tls://...,
// qemu+ssh://...) or a unix socket (qemu+unix:///system?socket=PATH, for
// a libvirtd on the same machine).
func checkMigrationURI(s string) error {
	if s == "" {
		return errors.New("no migration URI: set one (--migration-uri, e.g. qemu+tcp://HOST/system) that peer hosts' libvirtd can connect to")
	}
	if strings.ContainsAny(s, "# \t\r\n") {
		return fmt.Errorf("migration URI %q: must not contain '#' or white space", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("migration URI %q: %w", s, err)
	}
	driver, _, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" || !strings.Contains(s, "://") {
		return fmt.Errorf("migration URI %q: want a libvirt QEMU URI (qemu+tcp://HOST/system, qemu+tls://HOST/system, qemu+ssh://HOST/system)", s)
	}
	if u.Host == "" && u.Query().Get("socket") == "" {
		return fmt.Errorf("migration URI %q names no host: another host's libvirtd cannot reach this one by it (use qemu+tcp://HOST/system, qemu+tls://HOST/system or qemu+ssh://HOST/system)", s)
	}
	return nil
}

// defaultMigrationURI is the connection URI when peers can use it (see
// checkMigrationURI), else "".
func defaultMigrationURI(uri string) string {
	if checkMigrationURI(uri) != nil {
		return ""
	}
	return uri
}

// normalMigrationAddress turns ADDR[:PORT] or tcp://ADDR[:PORT] into
// tcp://ADDR[:PORT] (an IPv6 address in brackets).
func normalMigrationAddress(a string) (string, error) {
	s := a
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("migration address %q: %w", a, err)
	}
	if u.Scheme != "tcp" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(u.Host, " \t#") ||
		(strings.Contains(u.Hostname(), ":") != strings.HasPrefix(u.Host, "[")) {
		return "", fmt.Errorf("migration address %q: want ADDR[:PORT] or tcp://ADDR[:PORT]", a)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("migration address %q: bad port %q", a, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("migration address %q: empty port", a)
	}
	return "tcp://" + u.Host, nil
}

// listenIP is the host of a data URI (tcp://ADDR[:PORT]) if it is an IP
// address, else "".
func listenIP(dataURI string) string {
	u, err := url.Parse(dataURI)
	if err != nil || net.ParseIP(u.Hostname()) == nil {
		return ""
	}
	return u.Hostname()
}
