package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of the policies.
const GroupName = "metal-stack.io"

// Namespace is the only namespace whose policies take effect.
const Namespace = "firewall"

// GroupVersion returns the group version of this package.
func GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: GroupName, Version: "v1"}
}

// AddToScheme adds the ClusterwideNetworkPolicy types to a scheme.
func AddToScheme(s *runtime.Scheme) error {
	gv := GroupVersion()
	s.AddKnownTypes(gv, &ClusterwideNetworkPolicy{}, &ClusterwideNetworkPolicyList{})
	metav1.AddToGroupVersion(s, gv)
	return nil
}
