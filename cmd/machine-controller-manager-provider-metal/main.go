// Command machine-controller-manager-provider-metal is gardener's machine-controller-manager
// provider for metalforge: MCM's provider-side machine controller (its app.Run and flags) with the
// metal-api driver of pkg/mcm. Each MachineClass's secret names metal-api and the token
// (metalAPIURL, metalAPIToken) and carries the user data (userData); see pkg/mcm.
//
//	machine-controller-manager-provider-metal --control-kubeconfig=seed.yaml \
//	    --target-kubeconfig=shoot.yaml --namespace=shoot--proj--name --leader-elect=false
package main

import (
	"os"

	"github.com/metalforge/metalforge/pkg/mcm"
)

func main() {
	os.Exit(mcm.Main("machine-controller-manager-provider-metal", os.Args[1:], os.Stderr))
}
