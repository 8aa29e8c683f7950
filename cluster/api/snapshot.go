package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kumoi/kumoi/internal/snapfile"
	"github.com/kumoi/kumoi/resource"
)

// DefaultMaxSnapshotBytes caps the archive a restore may send and the
// state it holds (Options.MaxSnapshotBytes).
const DefaultMaxSnapshotBytes = 1 << 30

// snapshotWriteTime is how long a snapshot download may take.
const snapshotWriteTime = 10 * time.Minute

// snapshotRoute: GET (save) and PUT (restore) /v1/operator/snapshot. A
// restore's body is the archive itself: Content-Type application/gzip.
func (a *httpAPI) snapshotRoute() apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		switch r.Method {
		case http.MethodGet:
			return a.snapshotSave(w, r)
		case http.MethodPut:
			if err := checkMediaType(r, snapshotMediaType, "send the file of kumoi operator snapshot save (curl: --data-binary @FILE -H 'Content-Type: application/gzip')"); err != nil {
				return err
			}
			return a.snapshotRestore(w, r)
		}
		w.Header().Set("Allow", "GET, PUT")
		return &apiError{status: http.StatusMethodNotAllowed, code: resource.CodeMethodNotAllowed,
			msg: fmt.Sprintf("%s does not support %s; use GET (save) or PUT (restore)", r.URL.Path, r.Method)}
	}
}

// snapshotMediaType is the Content-Type of a snapshot archive.
const snapshotMediaType = "application/gzip"

// snapshotSave: GET /v1/operator/snapshot, a consistent snapshot of the
// whole state as an archive (internal/snapfile), served by the leader.
func (a *httpAPI) snapshotSave(w http.ResponseWriter, r *http.Request) error {
	if _, err := apiQuery(r); err != nil {
		return err
	}
	return a.onLeader(w, r, nil, func() error {
		var state bytes.Buffer
		meta, err := a.b.SaveSnapshot(r.Context(), &state)
		if err != nil {
			return err
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(snapshotWriteTime))
		w.Header().Set("Content-Type", snapshotMediaType)
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="kumoi-%d.snap"`, meta.Index))
		w.Header().Set(headerIndex, strconv.FormatUint(meta.Index, 10))
		w.WriteHeader(http.StatusOK)
		// An error now cuts the archive short: its checksum tells.
		return snapfile.Write(w, meta, state.Bytes())
	})
}

// snapshotRestore: PUT /v1/operator/snapshot[?force=true], the body an
// archive of GET /v1/operator/snapshot. The leader replaces the cluster's
// state with it through Raft.
func (a *httpAPI) snapshotRestore(w http.ResponseWriter, r *http.Request) error {
	q, err := apiQuery(r, "force")
	if err != nil {
		return err
	}
	force := false
	if q.Has("force") {
		if v := q.Get("force"); v == "" {
			force = true
		} else if force, err = strconv.ParseBool(v); err != nil {
			return badArg("force", "force must be true or false (or given without a value), not %q", v)
		}
	}
	// Checked here too, before a large body is read for nobody.
	if err := a.authorize(r); err != nil {
		return err
	}
	// A large archive takes longer to send, and a restore (raft.Restore,
	// the followers installing it) longer to answer, than the server's
	// usual timeouts allow.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(snapshotWriteTime))
	_ = rc.SetWriteDeadline(time.Now().Add(snapshotWriteTime))
	// MaxBytesReader tells the server itself to close the connection
	// after an oversized body; the answer still goes through w.
	sw := w
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		sw = u.Unwrap()
	}
	body, err := io.ReadAll(http.MaxBytesReader(sw, r.Body, a.maxSnapshot))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: resource.CodeBodyTooLarge,
			msg: fmt.Sprintf("the snapshot is larger than this controller's limit of %d bytes", tooBig.Limit)}
	case err != nil:
		return badArg("body", "cannot read the snapshot: %v", err)
	case len(body) == 0:
		return badArg("body", "the request body is empty; send a snapshot file of kumoi operator snapshot save")
	}
	return a.onLeader(w, r, body, func() error {
		_, state, err := snapfile.Read(bytes.NewReader(body), a.maxSnapshot)
		if err != nil {
			return fmt.Errorf("%w: %v", resource.ErrBadSnapshot, err)
		}
		res, err := a.b.RestoreSnapshot(r.Context(), state, force)
		if err != nil {
			return err
		}
		if res.Objects == nil {
			res.Objects = map[resource.Kind]int{}
		}
		w.Header().Set(headerIndex, strconv.FormatUint(res.Index, 10))
		return writeJSON(w, http.StatusOK, res)
	})
}
