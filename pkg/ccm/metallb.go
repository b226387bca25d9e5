package ccm

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// LabelNetwork on a pool names the metal-api network its addresses come from.
const LabelNetwork = "lb.metalforge.io/network"

// metalLB writes MetalLB's BGP mode config:
//   - one IPAddressPool per metal-api network with the cluster's Service IPs as host routes,
//     autoAssign off: metal-ccm assigns the addresses (Service status), MetalLB keeps what the status
//     says and announces it;
//   - one BGPAdvertisement for those pools;
//   - one BGPPeer per node: the speaker peers with the FRR on its own machine (PeerAddress) in the
//     machine's ASN (iBGP), and FRR announces the routes to the leaves.
func metalLBBackend() backend {
	return backend{
		kinds: []kind{
			{gvr: schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"}, kind: "IPAddressPool", namespaced: true},
			{gvr: schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "bgpadvertisements"}, kind: "BGPAdvertisement", namespaced: true},
			{gvr: schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta2", Resource: "bgppeers"}, kind: "BGPPeer", namespaced: true},
		},
		render: renderMetalLB,
	}
}

func renderMetalLB(cfg Config, st lbState) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	ns := cfg.Namespace
	for _, network := range slices.Sorted(maps.Keys(st.Pools)) {
		var addrs []any
		for _, a := range st.Pools[network] {
			addrs = append(addrs, hostPrefix(a))
		}
		out = append(out, obj("metallb.io/v1beta1", "IPAddressPool", ns, objectName("metal-", network),
			map[string]any{LabelNetwork: labelValue(network)},
			map[string]any{"addresses": addrs, "autoAssign": false, "avoidBuggyIPs": false}))
	}
	out = append(out, obj("metallb.io/v1beta1", "BGPAdvertisement", ns, "metal-ccm", nil, map[string]any{
		"ipAddressPoolSelectors": []any{map[string]any{"matchLabels": map[string]any{LabelManagedBy: managedBy}}},
	}))
	for _, p := range st.Peers {
		out = append(out, obj("metallb.io/v1beta2", "BGPPeer", ns, objectName("node-", p.Node), nil, map[string]any{
			"myASN":       int64(p.ASN),
			"peerASN":     int64(p.ASN),
			"peerAddress": cfg.PeerAddress,
			"nodeSelectors": []any{map[string]any{
				"matchLabels": map[string]any{corev1.LabelHostname: p.Hostname},
			}},
		}))
	}
	return out
}
