// Package externalgrpc holds the protobuf messages and gRPC stubs of cluster-autoscaler's
// externalgrpc CloudProvider service (proto package clusterautoscaler.cloudprovider.v1.externalgrpc),
// generated from externalgrpc.proto by gen.sh. The wire interface is upstream's; pkg/autoscaler
// serves it for metalforge node groups.
package externalgrpc
