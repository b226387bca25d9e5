// Package v1alpha1 is version v1alpha1 of metalforge's Gardener provider configuration API,
// group metal.provider.extensions.gardener.cloud. Its JSON field names and nesting match the
// provider configs of the existing "metal" provider type, so manifests written for it decode
// unchanged. Conversions to and from the internal version (package metal), deep copies and
// defaulting glue are generated (zz_generated.*.go, see generate.sh); defaults.go holds the
// defaults themselves.
//
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/metalforge/metalforge/pkg/apis/metal
// +k8s:defaulter-gen=TypeMeta
// +groupName=metal.provider.extensions.gardener.cloud
package v1alpha1

//go:generate ./generate.sh
