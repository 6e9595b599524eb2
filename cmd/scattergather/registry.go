package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// registrySubjects lists, for each topic of the flows, the subject of each
// kind of record written there. The dead-letter topic holds records as they
// came, so it has none.
func registrySubjects(c *schemas.Codec, strategy string, flows []*topology.Flow) ([]schemas.SubjectKind, error) {
	var out []schemas.SubjectKind
	add := func(topic string, kinds ...schemas.Kind) error {
		for _, k := range kinds {
			s, err := c.Subject(strategy, topic, k)
			if err != nil {
				return err
			}
			out = append(out, schemas.SubjectKind{Subject: s, Kind: k})
		}
		return nil
	}
	for _, f := range flows {
		if err := add(f.Topics.Requests, schemas.KindRequest); err != nil {
			return nil, err
		}
		for _, tg := range f.Targets {
			if err := add(tg.Topic, schemas.KindTask); err != nil {
				return nil, err
			}
		}
		if err := add(f.Topics.Results, schemas.KindManifest, schemas.KindResult, schemas.KindTick); err != nil {
			return nil, err
		}
		if err := add(f.Topics.Aggregated, schemas.KindAggregate); err != nil {
			return nil, err
		}
		if err := add(f.Topics.Late, schemas.KindResult); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// newRegistry returns the client of the topology's schema registry, or nil
// when it has none.
func newRegistry(t *topology.Topology) (*schemas.Registry, error) {
	r := t.Kafka.SchemaRegistry
	if r == nil {
		return nil, nil
	}
	return schemas.NewRegistry(schemas.RegistryConfig{URL: r.URL, Username: r.Username, Password: r.Password, Timeout: r.Timeout.D})
}

// codecFor returns the codec of a command over flows: schemas.Default when
// the topology has no schema registry. With one, the codec reads both
// framings, fetching unknown ids from the registry, and, with encoding
// registry, writes the registry's framing with the ids of the current
// schemas: registered when register is set (topics create), else looked up,
// so that a role fails at its start, not at its first record, when they are
// missing.
func codecFor(ctx context.Context, t *topology.Topology, flows []*topology.Flow, register bool) (*schemas.Codec, []schemas.SubjectKind, error) {
	reg, err := newRegistry(t)
	if err != nil || reg == nil {
		return schemas.Default, nil, err
	}
	c := schemas.NewCodec()
	if !register && !t.Kafka.UsesRegistry() {
		c.SetSchemaSource(reg, t.Kafka.SchemaRegistry.Timeout.D)
		return c, nil, nil
	}
	subjects, err := registrySubjects(c, t.Kafka.SchemaRegistry.SubjectStrategy, flows)
	if err != nil {
		return nil, nil, err
	}
	if err := c.UseRegistry(ctx, reg, subjects, register); err != nil {
		if !register && errors.Is(err, schemas.ErrSchemaNotFound) {
			return nil, nil, fmt.Errorf("%w (have `scattergather topics create` register the schemas)", err)
		}
		return nil, nil, err
	}
	return c, subjects, nil
}
