package ccm

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// cilium writes Cilium's LB-IPAM and BGP control plane (v2 API) config, all cluster-scoped:
//   - one CiliumLoadBalancerIPPool per metal-api network with the cluster's Service IPs as /32
//     (/128) blocks;
//   - one CiliumBGPClusterConfig per node (its own ASN), selecting the node by hostname and
//     peering with the FRR on the machine (PeerAddress) in that ASN;
//   - one CiliumBGPPeerConfig and one CiliumBGPAdvertisement that announce the LoadBalancer IPs
//     of all Services.
func ciliumBackend() backend {
	return backend{
		kinds: []kind{
			{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumloadbalancerippools"}, kind: "CiliumLoadBalancerIPPool"},
			{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumbgpclusterconfigs"}, kind: "CiliumBGPClusterConfig"},
			{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumbgppeerconfigs"}, kind: "CiliumBGPPeerConfig"},
			{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumbgpadvertisements"}, kind: "CiliumBGPAdvertisement"},
		},
		render: renderCilium,
	}
}

func renderCilium(cfg Config, st lbState) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, network := range slices.Sorted(maps.Keys(st.Pools)) {
		var blocks []any
		for _, a := range st.Pools[network] {
			blocks = append(blocks, map[string]any{"cidr": hostPrefix(a)})
		}
		out = append(out, obj("cilium.io/v2", "CiliumLoadBalancerIPPool", "", objectName("metal-", network),
			map[string]any{LabelNetwork: labelValue(network)},
			map[string]any{"blocks": blocks}))
	}
	adLabels := map[string]any{"lb.metalforge.io/advertise": "metal-ccm"}
	out = append(out,
		obj("cilium.io/v2", "CiliumBGPAdvertisement", "", "metal-ccm", adLabels, map[string]any{
			"advertisements": []any{map[string]any{
				"advertisementType": "Service",
				"service":           map[string]any{"addresses": []any{"LoadBalancerIP"}},
				// An empty selector selects nothing; this one selects every Service.
				"selector": map[string]any{"matchExpressions": []any{map[string]any{
					"key": "lb.metalforge.io/never", "operator": "NotIn", "values": []any{"never"}}}},
			}},
		}),
		obj("cilium.io/v2", "CiliumBGPPeerConfig", "", "metal-ccm", nil, map[string]any{
			"families": []any{
				map[string]any{"afi": "ipv4", "safi": "unicast", "advertisements": map[string]any{"matchLabels": adLabels}},
				map[string]any{"afi": "ipv6", "safi": "unicast", "advertisements": map[string]any{"matchLabels": adLabels}},
			},
		}))
	for _, p := range st.Peers {
		out = append(out, obj("cilium.io/v2", "CiliumBGPClusterConfig", "", objectName("node-", p.Node), nil, map[string]any{
			"nodeSelector": map[string]any{"matchLabels": map[string]any{corev1.LabelHostname: p.Hostname}},
			"bgpInstances": []any{map[string]any{
				"name":     "metal",
				"localASN": int64(p.ASN),
				"peers": []any{map[string]any{
					"name":          "machine-frr",
					"peerASN":       int64(p.ASN),
					"peerAddress":   cfg.PeerAddress,
					"peerConfigRef": map[string]any{"name": "metal-ccm"},
				}},
			}},
		}))
	}
	return out
}
