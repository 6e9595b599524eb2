// Package cluster is the fault suite on a three-node KRaft cluster
// (scripts/kafka-cluster.sh): partition leaders, the transaction
// coordinator and the group coordinator killed mid-load, two brokers down
// at once, and rebalance storms, each checked by what a read_committed
// consumer sees. Its tests need SG_CLUSTER_SCRIPT.
package cluster
