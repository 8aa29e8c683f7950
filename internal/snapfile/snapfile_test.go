package snapfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumoi/kumoi/resource"
)

func archive(t testing.TB, state string) []byte {
	t.Helper()
	var buf bytes.Buffer
	meta := resource.SnapshotMeta{ClusterID: "c", Index: 7, Version: "v", Protocol: 9, StateVersion: 3, Node: "n1",
		Created: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), Objects: map[resource.Kind]int{resource.KindVM: 2}}
	if err := Write(&buf, meta, []byte(state)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawArchive builds an archive from the given files, as a hand-made or
// damaged one would be.
func rawArchive(t testing.TB, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o600, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	a := archive(t, "the state\n")
	meta, state, err := Read(bytes.NewReader(a), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(state) != "the state\n" || meta.Format != Format || meta.Size != 10 || meta.ClusterID != "c" || meta.Index != 7 ||
		meta.Objects[resource.KindVM] != 2 || len(meta.SHA256) != 64 {
		t.Errorf("meta %+v state %q", meta, state)
	}
}

// TestReadRefuses checks every way a file can be wrong: each is refused
// with ErrInvalid and a message that says what is wrong.
func TestReadRefuses(t *testing.T) {
	good := archive(t, "the state\n")
	var metaJSON string
	{
		zr, _ := gzip.NewReader(bytes.NewReader(good))
		tr := tar.NewReader(zr)
		tr.Next()
		var b bytes.Buffer
		b.ReadFrom(tr)
		metaJSON = b.String()
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x55
	for name, tc := range map[string]struct {
		data    []byte
		mention string
	}{
		"empty":            {nil, "gzip"},
		"not gzip":         {[]byte("hello"), "gzip"},
		"truncated":        {good[:len(good)/2], ""},
		"damaged":          {flipped, ""},
		"no state":         {rawArchive(t, [2]string{MetaFile, metaJSON}), "ends before state.json"},
		"state first":      {rawArchive(t, [2]string{StateFile, "x"}, [2]string{MetaFile, metaJSON}), "where meta.json should be"},
		"extra file":       {rawArchive(t, [2]string{MetaFile, metaJSON}, [2]string{StateFile, "the state\n"}, [2]string{"x", ""}), "more than"},
		"other state":      {rawArchive(t, [2]string{MetaFile, metaJSON}, [2]string{StateFile, "the statE\n"}), "SHA-256"},
		"shorter state":    {rawArchive(t, [2]string{MetaFile, metaJSON}, [2]string{StateFile, "the stat"}), "bytes"},
		"unknown field":    {rawArchive(t, [2]string{MetaFile, strings.Replace(metaJSON, `"format"`, `"formats"`, 1)}, [2]string{StateFile, "the state\n"}), "formats"},
		"future format":    {rawArchive(t, [2]string{MetaFile, strings.Replace(metaJSON, `"format": 1`, `"format": 2`, 1)}, [2]string{StateFile, "the state\n"}), "format 2"},
		"meta not json":    {rawArchive(t, [2]string{MetaFile, "{"}, [2]string{StateFile, "the state\n"}), "meta.json"},
		"state over limit": {archive(t, strings.Repeat("x", 2000)), "allowed"},
	} {
		_, _, err := Read(bytes.NewReader(tc.data), 1000)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", name, err, tc.mention)
		}
	}
}

// FuzzRead feeds Read arbitrary bytes: it must never panic, and whatever
// it accepts must carry a state that matches its checksum and size.
func FuzzRead(f *testing.F) {
	f.Add(archive(f, "the state\n"))
	f.Add(archive(f, ""))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		meta, state, err := Read(bytes.NewReader(data), 1<<16)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if int64(len(state)) != meta.Size {
			t.Fatalf("accepted a state of %d bytes, meta says %d", len(state), meta.Size)
		}
	})
}
