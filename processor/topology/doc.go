// Package topology reads topology.yaml, the file that describes every flow:
// its topics, targets, fan-out, gather strategy, consolidation and timeout.
//
// Decoding is strict: an unknown key, a value of the wrong type or an
// invalid setting is a *Problem located by its path in the document
// (flows[0].strategy.type) and its line, and Parse reports every problem at
// once in an *Error. Scalars may use ${VAR} and ${VAR:-default} to read the
// environment; messages name the variable, never its value. A
// consolidation type is one of the built-in ones or one registered with
// RegisterConsolidation, which gather.Register calls, so a topology that
// loads is one the gather accepts.
package topology
