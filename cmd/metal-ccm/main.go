// Command metal-ccm is metalforge's cloud-controller-manager for tenant clusters: the upstream
// cloud node, node lifecycle and service controllers (k8s.io/cloud-provider/app: the usual CCM
// flags, leader election, /healthz and /metrics on the secure port) driving pkg/ccm, plus the
// metal-housekeeping controller that keeps node labels in step with the machines.
//
//	metal-ccm --cloud-provider=metal --cloud-config=/etc/metal/cloud.yaml \
//	  --kubeconfig=... --leader-elect=true --concurrent-service-syncs=4
//
// The cloud config (YAML: metalAPIURL, metalAPIToken ("@file" reads it from a file), projectID,
// clusterID, defaultExternalNetwork, loadBalancer, namespace, peerAddress, nodeTagPrefix) may be
// replaced or overridden by METAL_API_URL, METAL_API_TOKEN, METAL_PROJECT_ID, METAL_CLUSTER_ID,
// METAL_DEFAULT_EXTERNAL_NETWORK, METAL_LOAD_BALANCER, METAL_LB_NAMESPACE, METAL_PEER_ADDRESS,
// METAL_NODE_TAG_PREFIX and METAL_HOUSEKEEPING_INTERVAL.
//
// metal-housekeeping sets the cluster tag cluster.metalforge.io/id=<clusterID> on the machine of
// every Node, copies the Node's labels under nodeTagPrefix (default tag.metalforge.io/) to machine
// tags, and the machine's other key=value tags, size, partition, rack and ASN to node labels.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics on /metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric on /metrics
	genericcontrollermanager "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"
	"k8s.io/klog/v2"

	"github.com/metalforge/metalforge/pkg/ccm"
)

// housekeepingController is the name of metalforge's own controller (--controllers).
const housekeepingController = "metal-housekeeping"

func main() {
	os.Exit(run())
}

func run() int {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		fmt.Fprintf(os.Stderr, "metal-ccm: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := app.NewCloudControllerManagerCommand(opts, cloudInitializer, controllers(), names.CCMControllerAliases(),
		cliflag.NamedFlagSets{}, ctx.Done())
	cmd.Use = "metal-ccm"
	return cli.Run(cmd)
}

// controllers are the upstream ones (without routes: every node routes on its own, BGP on the host)
// plus housekeeping.
func controllers() map[string]app.ControllerInitFuncConstructor {
	out := map[string]app.ControllerInitFuncConstructor{}
	for name, c := range app.DefaultInitFuncConstructors {
		if name != names.NodeRouteController {
			out[name] = c
		}
	}
	out[housekeepingController] = app.ControllerInitFuncConstructor{
		InitContext: app.ControllerInitContext{ClientName: housekeepingController},
		Constructor: startHousekeeping,
	}
	return out
}

func startHousekeeping(ic app.ControllerInitContext, cc *config.CompletedConfig, cloud cloudprovider.Interface) app.InitFunc {
	return func(ctx context.Context, _ genericcontrollermanager.ControllerContext) (controller.Interface, bool, error) {
		mc, ok := cloud.(*ccm.Cloud)
		if !ok {
			return nil, false, fmt.Errorf("cloud provider %T is not metal's", cloud)
		}
		kube, err := cc.ClientBuilder.Client(ic.ClientName)
		if err != nil {
			return nil, false, fmt.Errorf("client for %s: %w", housekeepingController, err)
		}
		h, err := mc.Housekeeping(kube, cc.SharedInformers.Core().V1().Nodes(), cc.EventRecorder)
		if err != nil {
			return nil, false, err
		}
		go h.Run(ctx)
		return nil, true, nil
	}
}

// cloudInitializer builds the cloud from --cloud-config and the METAL_* environment. The app's
// interface has no error return: a broken config ends the process here, in main's package.
func cloudInitializer(cc *config.CompletedConfig) cloudprovider.Interface {
	cp := cc.ComponentConfig.KubeCloudShared.CloudProvider
	if cp.Name != ccm.ProviderName {
		klog.Fatalf("metal-ccm: --cloud-provider is %q, want %q", cp.Name, ccm.ProviderName)
	}
	cfg, err := ccm.LoadConfig(cp.CloudConfigFile, os.Getenv)
	if err != nil {
		klog.Fatalf("metal-ccm: %v", err)
	}
	cloud, err := ccm.New(cfg, klog.Background().WithName("metal-ccm"))
	if err != nil {
		klog.Fatalf("metal-ccm: %v", err)
	}
	return cloud
}
