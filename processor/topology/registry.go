package topology

import (
	"slices"
	"strings"
	"sync"
)

// builtinConsolidations are the consolidation types every program knows,
// in the order messages list them.
var builtinConsolidations = []string{
	ConsolidateCollect, ConsolidateMin, ConsolidateMax, ConsolidateVote, ConsolidateMerge, ConsolidateSum,
}

var (
	registryMu     sync.RWMutex
	consolidations = map[string]func(Consolidate) error{}
)

// RegisterConsolidation makes Validate (and so Parse and LoadFile) accept
// consolidate.type: name, and check a flow's consolidate section with
// check, whose error becomes a problem at flows[i].consolidate; a nil check
// accepts any section. gather.Register calls it: a program registers a
// custom consolidation there, from an init function, so that topologies are
// checked against it before they are loaded. Without registration, a type
// other than the built-in ones is a problem at flows[i].consolidate.type.
// It panics if name is built in or already registered. Safe for concurrent
// use.
func RegisterConsolidation(name string, check func(Consolidate) error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if slices.Contains(builtinConsolidations, name) {
		panic("topology: RegisterConsolidation of built-in consolidation " + name)
	}
	if _, dup := consolidations[name]; dup {
		panic("topology: RegisterConsolidation called twice for " + name)
	}
	consolidations[name] = check
}

// registeredConsolidation returns the check of a registered consolidation.
func registeredConsolidation(name string) (check func(Consolidate) error, ok bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	check, ok = consolidations[name]
	return check, ok
}

// knownConsolidations lists the built-in types, then the registered ones
// sorted, for messages.
func knownConsolidations() string {
	registryMu.RLock()
	names := make([]string, 0, len(consolidations))
	for n := range consolidations {
		names = append(names, n)
	}
	registryMu.RUnlock()
	slices.Sort(names)
	return strings.Join(append(slices.Clone(builtinConsolidations), names...), ", ")
}
