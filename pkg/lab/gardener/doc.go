// Package gardener is the Shoot-shaped end-to-end flow of metalforge's Gardener integration: from
// the example manifests (example/gardener: CloudProfile, Seed, Shoot, read strictly into gardener's
// core/v1beta1 types) to the objects gardenlet creates in the seed for a shoot (the shoot namespace,
// the Cluster with shoot, cloud profile and seed embedded, the cloudprovider secret, the generic
// token kubeconfig, the Infrastructure and, once that is ready, the ControlPlane and the Worker
// with one user-data secret per pool), so a test can run gardener-extension-provider-metal and the
// machine-controller-manager against them and watch metal-api allocate the firewall and the
// workers and the control plane actuator render metal-ccm and the shoot's network policies.
//
// What gardenlet itself does (admission, defaulting, scheduling, the operating system config and
// the node agent, the shoot's own control plane, gardener-resource-manager applying the
// ManagedResources, health and DNS) is not here: Gardenlet builds only the extension objects and
// the seed secrets they read, from the Shoot as written, the way gardenlet's botanist components do.
package gardener
