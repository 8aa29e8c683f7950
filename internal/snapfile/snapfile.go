// Package snapfile is the file format of kumoi operator snapshot save,
// restore and inspect: a gzip-compressed tar archive of two files,
//
//	meta.json   what the snapshot is (resource.SnapshotMeta): the cluster's
//	            identity, the Raft index, the version that saved it, what it
//	            holds, and the SHA-256 and size of state.json
//	state.json  the state machine's snapshot stream (fsm/snapshot.go), as
//	            Raft's own snapshots hold it
//
// in that order and nothing else, so that `tar -xzf` opens one and a
// damaged or truncated file is caught by its checksum before anything is
// restored.
package snapfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kumoi/kumoi/resource"
)

// Format is the version of the archive layout (meta.json's "format").
const Format = 1

// Names of the archive's two files.
const (
	MetaFile  = "meta.json"
	StateFile = "state.json"
)

// maxMeta caps meta.json.
const maxMeta = 1 << 20

// Write writes an archive holding meta and state. It sets meta's Format,
// Size and SHA256 from state.
func Write(w io.Writer, meta resource.SnapshotMeta, state []byte) error {
	sum := sha256.Sum256(state)
	meta.Format = Format
	meta.Size = int64(len(state))
	meta.SHA256 = hex.EncodeToString(sum[:])
	mj, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	mj = append(mj, '\n')
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	mtime := meta.Created
	if mtime.IsZero() {
		mtime = time.Now()
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{MetaFile, mj}, {StateFile, state}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// ErrInvalid is wrapped by every error of Read about the file itself.
var ErrInvalid = errors.New("not a valid kumoi snapshot")

// Read reads an archive: its meta and its state, at most maxState bytes of
// it, checked against the meta's size and checksum.
func Read(r io.Reader, maxState int64) (*resource.SnapshotMeta, []byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not gzip-compressed (%v)", ErrInvalid, err)
	}
	tr := tar.NewReader(zr)
	next := func(want string, limit int64) ([]byte, error) {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: it ends before %s", ErrInvalid, want)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if h.Name != want || h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: found %q where %s should be", ErrInvalid, h.Name, want)
		}
		if h.Size > limit {
			return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrInvalid, want, h.Size, limit)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%w: reading %s: %v", ErrInvalid, want, err)
		}
		return b, nil
	}
	mj, err := next(MetaFile, maxMeta)
	if err != nil {
		return nil, nil, err
	}
	var meta resource.SnapshotMeta
	dec := json.NewDecoder(bytes.NewReader(mj))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrInvalid, MetaFile, err)
	}
	if meta.Format != Format {
		return nil, nil, fmt.Errorf("%w: archive format %d, this build reads %d", ErrInvalid, meta.Format, Format)
	}
	state, err := next(StateFile, maxState)
	if err != nil {
		return nil, nil, err
	}
	if _, err := tr.Next(); err != io.EOF {
		return nil, nil, fmt.Errorf("%w: more than %s and %s in the archive", ErrInvalid, MetaFile, StateFile)
	}
	sum := sha256.Sum256(state)
	switch {
	case int64(len(state)) != meta.Size:
		return nil, nil, fmt.Errorf("%w: %s is %d bytes, meta.json says %d: the file is damaged", ErrInvalid, StateFile, len(state), meta.Size)
	case hex.EncodeToString(sum[:]) != meta.SHA256:
		return nil, nil, fmt.Errorf("%w: %s has SHA-256 %x, meta.json says %s: the file is damaged", ErrInvalid, StateFile, sum, meta.SHA256)
	}
	return &meta, state, nil
}
