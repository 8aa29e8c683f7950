package client

import (
	"encoding/json"
	"testing"

	"github.com/kumoi/kumoi/resource"
)

// TestEncodeSpecKeepsUnknownFields: a typed update keeps the spec fields
// this client does not know (a newer server's) and sets or clears only its
// own.
func TestEncodeSpecKeepsUnknownFields(t *testing.T) {
	o := &resource.Object{Kind: resource.KindVM, Name: "web",
		Spec: json.RawMessage(`{"cpus":1,"memory_mib":256,"power":"running","ha":"none","boot":{"image":"/a.qcow2"},"gpu":{"count":2}}`)}
	spec := resource.VMSpec{CPUs: 2, MemoryMiB: 256, Power: resource.PowerStopped, HA: resource.HANone} // boot cleared
	next, err := encodeSpec(o, spec)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(next.Spec, &got); err != nil {
		t.Fatal(err)
	}
	if string(got["gpu"]) != `{"count":2}` {
		t.Errorf("unknown field gpu = %s, want it kept", got["gpu"])
	}
	if _, ok := got["boot"]; ok {
		t.Errorf("boot = %s, want it cleared (the typed spec knows it and left it empty)", got["boot"])
	}
	if string(got["cpus"]) != "2" || string(got["power"]) != `"stopped"` {
		t.Errorf("spec %s: the typed fields were not written", next.Spec)
	}
	if string(o.Spec) == string(next.Spec) {
		t.Error("the object read was changed in place")
	}
}
