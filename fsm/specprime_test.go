package fsm

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

// TestPrimeSpecFields checks that what the writer primes the device
// index's cache with is, for every spec shape, what the index decodes.
func TestPrimeSpecFields(t *testing.T) {
	for _, spec := range []string{
		`{"cpus":1,"memory_mib":512}`,
		`{"cpus":1,"memory_mib":512,"affinity":{"group":"db","rule":"anti-affine","hard":true}}`,
		`{"cpus":1,"memory_mib":512,"affinity":{}}`,
		`{"cpus":1,"memory_mib":512,"affinity":null,"nics":null,"disks":null}`,
		`{"cpus":1,"memory_mib":512,"nics":[],"disks":[]}`,
		`{"cpus":1,"memory_mib":512,"nics":[{"network":"n1","ip":"10.0.0.2","mac":"52:54:00:00:00:01"},{"network":"n2"}]}`,
		`{"cpus":1,"memory_mib":512,"disks":[{"volume":"v1"},{"image":"debian","size_mib":1024}]}`,
		`{"cpus":2,"memory_mib":1024,"nics":[{"network":"n1"}],"disks":[{"volume":"v1"}],"affinity":{"group":"g","rule":"affine"},"requirements":"host.labels.zone == \"b\""}`,
	} {
		var v resource.VMSpec
		if err := json.Unmarshal([]byte(spec), &v); err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		c := &indexCaches{}
		primeSpecFields(c, []byte(spec), &v) // panics (checkApplyCaches) if it differs
		got, ok := c.spec.decode([]byte(spec))
		var want vmSpecFields
		if err := json.Unmarshal([]byte(spec), &want); err != nil || !ok {
			t.Fatalf("%s: %v %v", spec, err, ok)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: cache holds %+v, decode gives %+v", spec, got, want)
		}
		// The writer changes its decoded spec afterwards (IPAM): the
		// cache must not see it.
		for i := range v.NICs {
			v.NICs[i].IP = "10.9.9.9"
		}
		if got, _ := c.spec.decode([]byte(spec)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: a change of the writer's spec reached the cache: %+v", spec, got)
		}
	}
}

// TestPrimeStatusFields: what the writer primes of a VM status is what
// the status indexes would decode of its bytes, for statuses as the
// writer encodes them and as it may read them (other key cases, null
// and empty migrations, fields the indexes ignore).
func TestPrimeStatusFields(t *testing.T) {
	for _, status := range []string{
		`{"phase":"pending","reason":"no hosts"}`,
		`{"phase":"running","host":"h1","epoch":7,"since":"2026-12-03T10:00:00Z"}`,
		`{"phase":"migrating","host":"h1","migration":{"id":9,"target":"h2","mode":"live"}}`,
		`{"phase":"running","host":"h1","migration":null}`,
		`{"phase":"running","host":"h1","migration":{}}`,
		`{"Phase":"running","HOST":"h3"}`,
		`{"phase":"stopped","phase":"running"}`,
	} {
		var st resource.VMStatus
		if err := json.Unmarshal([]byte(status), &st); err != nil {
			t.Fatalf("%s: %v", status, err)
		}
		c := &indexCaches{}
		primeStatusFields(c, []byte(status), &st) // panics (checkApplyCaches) if it differs
		got, ok := c.status.decode([]byte(status))
		var want vmIndexFields
		if err := json.Unmarshal([]byte(status), &want); err != nil || !ok {
			t.Fatalf("%s: %v %v", status, err, ok)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: cache holds %+v, decode gives %+v", status, got, want)
		}
	}
}
