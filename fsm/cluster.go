package fsm

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/kumoi/kumoi/resource"
)

// metaClusterID is the meta table's key of the cluster's identity.
const metaClusterID = "cluster_id"

// metaEntry is one replicated fact about the cluster itself (not an
// object): its identity.
type metaEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ClusterInitRequest gives the cluster its identity. The first leader of
// a new cluster proposes it once, with a UUID it chose; the first one
// applied wins, and the identity never changes afterwards (a request with
// the same ID is a no-op, one with another ID is refused).
type ClusterInitRequest struct {
	Time time.Time `json:"time"`
	ID   string    `json:"id"`
}

// clusterInit applies a ClusterInitRequest.
func (w *writer) clusterInit(req *ClusterInitRequest) error {
	if _, err := uuid.Parse(req.ID); err != nil || len(req.ID) != 36 {
		return resource.Errorf("id", "cluster id %q is not a UUID", req.ID)
	}
	cur, err := clusterIDTxn(w.txn, nil)
	if err != nil {
		return err
	}
	switch cur {
	case req.ID:
		return nil
	case "":
	default:
		return fmt.Errorf("the cluster already has id %s, not %s: %w", cur, req.ID, ErrExists)
	}
	w.wrote = true
	if err := w.txn.Insert(tableMeta, &metaEntry{Key: metaClusterID, Value: req.ID}); err != nil {
		return fmt.Errorf("fsm: insert cluster id: %w", err)
	}
	return nil
}

func clusterIDTxn(txn *memdb.Txn, ws memdb.WatchSet) (string, error) {
	ch, raw, err := txn.FirstWatch(tableMeta, indexID, metaClusterID)
	if err != nil {
		return "", err
	}
	ws.Add(ch)
	if raw == nil {
		return "", nil
	}
	return raw.(*metaEntry).Value, nil
}

// ClusterID returns the cluster's identity ("" until the first leader's
// ClusterInitRequest is applied). With ws, a change of it fires ws.
func (s *Store) ClusterID(ws memdb.WatchSet) string {
	id, _ := clusterIDTxn(s.ReadTxn(), ws)
	return id
}
