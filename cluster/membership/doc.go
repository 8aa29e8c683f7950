// Package membership is the gossip layer every Kumoi agent shares:
// memberlist's configuration (timing tuned for a LAN, TCP dialled from the
// agent's own address), the gossip metadata schema (one Meta type, written
// by controllers and workers alike and read by everyone), the one delegate
// that serves an agent's metadata and records what it hears, and the member
// table built from those events.
//
// Gossip only tells who is alive and what each agent advertises; it decides
// nothing. Controllers turn it into Raft writes (hosts up or down, voters),
// workers use it to find the controllers' API.
//
// It must not import the cluster/ role packages (controller, api, worker,
// agent), fsm or hashicorp/raft: they build on it, never the other way.
package membership
