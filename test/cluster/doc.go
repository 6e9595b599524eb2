// Package cluster is the fault suite on a three-node KRaft cluster
// (scripts/kafka-cluster.sh): partition leaders, the transaction
// coordinator and the group coordinator killed mid-load, two brokers down
// at once, rebalance storms, and a soak in which a seeded random schedule
// kills, freezes and restarts roles and brokers and makes a provider hang
// (-soak.duration, default 2m; -soak.seed or SG_SOAK_SEED replays a
// schedule), each checked by what a read_committed consumer sees. Its
// tests need SG_CLUSTER_SCRIPT.
package cluster
