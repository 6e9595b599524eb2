// Package schemas is the wire contract of scattergather: the Avro schemas of
// every record that crosses Kafka (request, task, manifest, result, tick and
// aggregate, in the .avsc files of this directory), their Go types and the
// codec.
//
// Every record is an Avro single-object encoding: the marker bytes 0xC3 0x01,
// the 8-byte little-endian CRC-64-AVRO fingerprint of the writer's schema in
// Parsing Canonical Form, then the Avro binary body. A reader tells the kinds
// (and versions) apart by the fingerprint alone, which is how the gather reads
// manifests, results and ticks from one topic. A fingerprint the codec does
// not know is refused with ErrUnknownFingerprint, so such a record can be
// dead-lettered rather than misread.
//
// See README.md in this directory for the contract as a worker written in
// another language needs it.
package schemas
