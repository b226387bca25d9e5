// Package metal is the internal (hub) version of metalforge's Gardener provider configuration API,
// group metal.provider.extensions.gardener.cloud: InfrastructureConfig, ControlPlaneConfig,
// WorkerConfig and CloudProfileConfig plus the status types the actuators write back.
//
// Users write the versioned form (package v1alpha1), whose JSON is wire-compatible with the
// provider configs of the existing "metal" provider type, so Shoot and CloudProfile manifests
// written for it keep working. Decode them with package helper (strict: unknown fields are
// errors), check them with package validation, and register both versions in a scheme with
// package install. Only k8s.io/apimachinery is imported here, so the package stays light.
//
// +k8s:deepcopy-gen=package
// +groupName=metal.provider.extensions.gardener.cloud
package metal
