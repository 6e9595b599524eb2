package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
)

// OffsetsPartition exports offsetsPartition to the integration test that
// checks it against a broker.
var OffsetsPartition = offsetsPartition

// LostOutcome runs lostOutcome for a role of topo that writes outputs, with
// client cl: "commit", "abort" or "leave".
func LostOutcome(ctx context.Context, topo *topology.Topology, cl *kgo.Client, outputs []string, id int64, epoch int16, since int64) (string, error) {
	o := defaultOptions()
	o.finish()
	h := &hangCheck{topo: topo, o: &o, role: "test", cl: cl, outputs: outputs, log: o.logger}
	s, err := lostOutcome(ctx, h, id, epoch, since)
	return map[settlement]string{leave: "leave", abort: "abort", commit: "commit"}[s], err
}
