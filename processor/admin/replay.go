package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
)

// ErrLiveMembers: a replay was refused because the stage's group has
// members; stop the stage's instances first.
var ErrLiveMembers = errors.New("admin: the group has live members")

// LiveMembersError is Apply's refusal while the stage's group has members.
// It matches ErrLiveMembers with errors.Is.
type LiveMembersError struct {
	Group, Stage string
	// Static are the instance ids (group.instance.id) of static members:
	// the roles' instances, which stay registered after a clean stop until
	// kafka.session_timeout passes, so that a restart takes its partitions
	// back without a rebalance. Once they are really stopped,
	// RemoveStaticMembers removes them.
	Static []string
	// Dynamic are the member ids of members without an instance id, which
	// leave the group when they stop.
	Dynamic []string
}

func (e *LiveMembersError) Error() string {
	var ids []string
	for _, id := range e.Static {
		ids = append(ids, id+" (static)")
	}
	ids = append(ids, e.Dynamic...)
	return fmt.Sprintf("%v: %s has %d member(s): %s; stop the %s instances first (a stopped static member stays until kafka.session_timeout passes; --remove-static ID removes it)",
		ErrLiveMembers, e.Group, len(ids), strings.Join(ids, ", "), e.Stage)
}

// Is reports whether target is ErrLiveMembers.
func (e *LiveMembersError) Is(target error) bool { return target == ErrLiveMembers }

// ReplayPlan is what a replay will do: for each partition of the stage's
// input topic, the committed offset and the offset it is reset to.
type ReplayPlan struct {
	Flow, Stage, Group, Topic string
	// To is the target as given: earliest, an RFC 3339 time or an offset.
	To string
	// Epoch is recorded in the gather's offset metadata; every gather
	// instance whose local state carries another epoch discards it.
	Epoch      string
	Partitions []ReplayPartition
	// Members are the group's members when the plan was made.
	Members []string

	topo *topology.Topology
	opts []kafka.Opt
}

// ReplayPartition is one partition's reset.
type ReplayPartition struct {
	Partition int32
	Committed int64 // -1 when nothing is committed
	To        int64
}

// PlanReplay computes the reset of stage (kafka.RoleScatter or
// kafka.RoleGather) of flow to
// to: "earliest", an RFC 3339 time (the first offset at or after it) or an
// offset (the same for every partition, clamped to the log's bounds).
func PlanReplay(ctx context.Context, t *topology.Topology, f *topology.Flow, stage, to string, opts ...kafka.Opt) (*ReplayPlan, error) {
	var topic string
	switch stage {
	case kafka.RoleScatter:
		topic = f.Topics.Requests
	case kafka.RoleGather:
		topic = f.Topics.Results
	default:
		return nil, fmt.Errorf("admin: replay: unknown stage %q (scatter or gather)", stage)
	}
	cl, err := kgo.NewClient(kafka.ClientOptions(t, "replay", opts...)...)
	if err != nil {
		return nil, fmt.Errorf("admin: replay client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	p := &ReplayPlan{Flow: f.Name, Stage: stage, Group: t.Group(f, stage), Topic: topic, To: to,
		Epoch: "r" + strconv.FormatInt(time.Now().UnixMilli(), 10), topo: t, opts: opts}

	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("admin: replay: start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("admin: replay: end offsets of %s: %w", topic, err)
	}
	var targets kadm.ListedOffsets
	switch {
	case to == "earliest":
		targets = starts
	default:
		if ts, err := time.Parse(time.RFC3339, to); err == nil {
			if targets, err = adm.ListOffsetsAfterMilli(ctx, ts.UnixMilli(), topic); err != nil {
				return nil, fmt.Errorf("admin: replay: offsets after %s: %w", to, err)
			}
			break
		}
		off, err := strconv.ParseInt(to, 10, 64)
		if err != nil || off < 0 {
			return nil, fmt.Errorf("admin: replay: --to %q: want earliest, an RFC 3339 time or an offset", to)
		}
		targets = kadm.ListedOffsets{}
		starts.Each(func(s kadm.ListedOffset) {
			e, _ := ends.Lookup(topic, s.Partition)
			lo := s
			lo.Offset = min(max(off, s.Offset), e.Offset)
			if targets[topic] == nil {
				targets[topic] = map[int32]kadm.ListedOffset{}
			}
			targets[topic][s.Partition] = lo
		})
	}
	if err := targets.Error(); err != nil {
		return nil, fmt.Errorf("admin: replay: %w", err)
	}
	// What is committed now (Apply waits for pending transactions).
	committed, err := adm.FetchOffsets(ctx, p.Group)
	if err != nil {
		return nil, fmt.Errorf("admin: replay: committed offsets of %s: %w", p.Group, err)
	}
	targets.Each(func(lo kadm.ListedOffset) {
		rp := ReplayPartition{Partition: lo.Partition, Committed: -1, To: lo.Offset}
		if c, ok := committed.Lookup(topic, lo.Partition); ok && c.Err == nil {
			rp.Committed = c.At
		}
		p.Partitions = append(p.Partitions, rp)
	})
	slices.SortFunc(p.Partitions, func(a, b ReplayPartition) int { return int(a.Partition - b.Partition) })

	described, err := adm.DescribeGroups(ctx, p.Group)
	if err != nil {
		return nil, fmt.Errorf("admin: replay: describe %s: %w", p.Group, err)
	}
	if g, ok := described[p.Group]; ok {
		for _, m := range g.Members {
			id := m.MemberID
			if m.InstanceID != nil {
				id = *m.InstanceID
			}
			p.Members = append(p.Members, fmt.Sprintf("%s (%s)", id, m.ClientHost))
		}
	}
	return p, nil
}

func (p *ReplayPlan) partitions() []int32 {
	var out []int32
	for _, rp := range p.Partitions {
		out = append(out, rp.Partition)
	}
	return out
}

// String shows the plan.
func (p *ReplayPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replay %s stage of flow %s to %s\n", p.Stage, p.Flow, p.To)
	fmt.Fprintf(&b, "group %s, topic %s", p.Group, p.Topic)
	if p.Stage == kafka.RoleGather {
		fmt.Fprintf(&b, ", new state epoch %s", p.Epoch)
	}
	fmt.Fprintf(&b, "\n%-10s %12s    %12s\n", "partition", "committed", "reset to")
	for _, rp := range p.Partitions {
		c := strconv.FormatInt(rp.Committed, 10)
		if rp.Committed < 0 {
			c = "none"
		}
		fmt.Fprintf(&b, "%-10d %12s -> %12d\n", rp.Partition, c, rp.To)
	}
	if len(p.Members) > 0 {
		fmt.Fprintf(&b, "live members: %s\n", strings.Join(p.Members, ", "))
	}
	return b.String()
}

// ApplyOption tunes Apply.
type ApplyOption func(*applyOptions)

type applyOptions struct{ removeStatic []string }

// RemoveStaticMembers removes the named static members (group.instance.id)
// from the group before the reset. A stopped instance with static
// membership stays registered until its session times out; remove it only
// when it is really stopped.
func RemoveStaticMembers(ids ...string) ApplyOption {
	return func(o *applyOptions) { o.removeStatic = append(o.removeStatic, ids...) }
}

// Apply resets the group's offsets as planned. It refuses with
// ErrLiveMembers while the group has members (other than those it is told
// to remove). For the gather stage each offset carries metadata with the
// new epoch and the reset offset as the oldest needed one, so every
// instance, on any host, discards its local state and starts empty there.
func (p *ReplayPlan) Apply(ctx context.Context, opts ...ApplyOption) error {
	var ao applyOptions
	for _, opt := range opts {
		opt(&ao)
	}
	cl, err := kgo.NewClient(kafka.ClientOptions(p.topo, "replay", p.opts...)...)
	if err != nil {
		return fmt.Errorf("admin: replay client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if len(ao.removeStatic) > 0 {
		resp, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(p.Group).InstanceIDs(ao.removeStatic...).Reason("scattergather replay"))
		if err != nil {
			return fmt.Errorf("admin: replay: remove members: %w", err)
		}
		if err := resp.Error(); err != nil {
			return fmt.Errorf("admin: replay: remove members: %w", err)
		}
	}
	described, err := adm.DescribeGroups(ctx, p.Group)
	if err != nil {
		return fmt.Errorf("admin: replay: describe %s: %w", p.Group, err)
	}
	if g, ok := described[p.Group]; ok && len(g.Members) > 0 {
		le := &LiveMembersError{Group: p.Group, Stage: p.Stage}
		for _, m := range g.Members {
			if m.InstanceID != nil {
				le.Static = append(le.Static, *m.InstanceID)
			} else {
				le.Dynamic = append(le.Dynamic, m.MemberID)
			}
		}
		return le
	}
	// A transaction of a stopped instance may still hold offsets of the
	// group (killed after its TxnOffsetCommit, or in prepare-commit): they
	// would land after the reset and undo it. Wait until none is pending.
	if err := waitStable(ctx, cl, p.Group, p.Topic, p.partitions()); err != nil {
		return err
	}
	os := make(kadm.Offsets)
	for _, rp := range p.Partitions {
		meta := fmt.Sprintf("replayed to %s (%s)", p.To, p.Epoch)
		if p.Stage == kafka.RoleGather {
			meta = gather.ReplayMeta(p.Epoch, rp.To).String()
		}
		os.Add(kadm.Offset{Topic: p.Topic, Partition: rp.Partition, At: rp.To, LeaderEpoch: -1, Metadata: meta})
	}
	resp, err := adm.CommitOffsets(ctx, p.Group, os)
	if err != nil {
		return fmt.Errorf("admin: replay: commit offsets: %w", err)
	}
	if err := resp.Error(); err != nil {
		return fmt.Errorf("admin: replay: commit offsets: %w", err)
	}
	// Read them back, stable: what a restarted stage will start from.
	got, err := adm.FetchOffsets(kadm.RequireStable(ctx), p.Group)
	if err == nil {
		err = got.Error()
	}
	if err != nil {
		return fmt.Errorf("admin: replay: read back the offsets of %s: %w", p.Group, err)
	}
	for _, rp := range p.Partitions {
		if r, ok := got.Lookup(p.Topic, rp.Partition); !ok || r.At != rp.To {
			return fmt.Errorf("admin: replay: %s[%d] stands at %d after the reset to %d: another writer committed offsets of %s meanwhile; stop it and replay again", p.Topic, rp.Partition, r.At, rp.To, p.Group)
		}
	}
	return nil
}

// waitStable waits until no transaction holds pending offsets of the
// group for the plan's partitions, until ctx ends.
func waitStable(ctx context.Context, cl *kgo.Client, group, topic string, partitions []int32) error {
	for {
		_, err := kafka.FetchStableOffsets(ctx, cl, group, topic, partitions)
		if err == nil || errors.Is(err, kerr.GroupIDNotFound) {
			return nil
		}
		if !errors.Is(err, kerr.UnstableOffsetCommit) && !kerr.IsRetriable(err) {
			return fmt.Errorf("admin: replay: offsets of %s: %w", group, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("admin: replay: a transaction still holds offsets of %s (%v): wait for it to end (kafka.transaction_timeout) and replay again: %w", group, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
