// Package bootpb holds the protobuf messages and gRPC stubs of metal-api's boot service, generated
// from boot.proto by gen.sh. Domain payloads travel as JSON of the pkg/api types in bytes fields, so
// pkg/api stays the single definition of the model.
package bootpb
