package kafka

// OffsetsPartition exports offsetsPartition to the integration test that
// checks it against a broker.
var OffsetsPartition = offsetsPartition
