package metalctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	"github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

var networkColumns = []column{idCol, nameCol, col("TYPE", "type"), col("PREFIXES", "prefixes"), col("PARTITION", "partitionID"),
	col("PROJECT", "projectID"), col("PARENT", "parentNetworkID").onlyWide(), col("VRF", "vrf").onlyWide(),
	col("NAT", "nat").onlyWide(), col("DESTINATIONS", "destinationPrefixes").onlyWide(), col("LABELS", "labels").onlyWide()}

func networkResource() *resource {
	return &resource{
		name: "network", kind: "Network", aliases: []string{"net"},
		short:   "Networks: super, underlay and external networks, and the private networks of projects",
		columns: networkColumns,
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.Network.ListNetworksContext(ctx, network.NewListNetworksParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Network.GetNetworkContext(ctx, network.NewGetNetworkParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.Network](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Network.CreateNetworkContext(ctx, network.NewCreateNetworkParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.Network](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Network.UpdateNetworkContext(ctx, network.NewUpdateNetworkParams().WithID(id).WithBody(b), nil))
		},
		del:     deleteNetwork,
		actions: networkActions,
	}
}

func deleteNetwork(ctx context.Context, c api, id string) (any, error) {
	return payload(c.Network.DeleteNetworkContext(ctx, network.NewDeleteNetworkParams().WithID(id), nil))
}

// labels parses k=v flags.
func labels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func networkActions(c *cli, r *resource) []*cobra.Command {
	var req wire.NetworkAllocateRequest
	var lbls []string
	allocate := &cobra.Command{
		Use: "allocate", Short: "Allocate a private network for a project from the partition's super network", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			if req.Labels, err = labels(lbls); err != nil {
				return err
			}
			v, err := payload(api.Network.AllocateNetworkContext(ctxOf(cmd), network.NewAllocateNetworkParams().WithBody(&req), nil))
			if err != nil {
				return err
			}
			return c.print(cmd, v, r.columns)
		},
	}
	f := allocate.Flags()
	f.StringVar(&req.ProjectID, "project", "", "project (default: the token's)")
	f.StringVar(&req.PartitionID, "partition", "", "partition")
	f.StringVar(&req.Name, "name", "", "name")
	f.StringVar(&req.Description, "description", "", "description")
	f.BoolVar(&req.Shared, "shared", false, "a private-shared network other projects may attach")
	f.Int64Var(&req.PrefixLength, "prefix-length", 0, "prefix length (default: the super network's child prefix length)")
	f.StringSliceVar(&lbls, "label", nil, "label key=value, repeatable")
	_ = allocate.MarkFlagRequired("partition")

	free := &cobra.Command{
		Use: "free ID", Short: "Free a private network", Args: cobra.ExactArgs(1), ValidArgsFunction: c.completeIDs(r),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			v, err := deleteNetwork(ctxOf(cmd), api, args[0])
			if err != nil {
				return err
			}
			return c.printDone(cmd, v, r, args[0], "freed")
		},
	}
	usage := &cobra.Command{
		Use: "usage ID", Short: "Show how many addresses and prefixes of a network are used", Args: cobra.ExactArgs(1),
		ValidArgsFunction: c.completeIDs(r),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			v, err := payload(api.Network.GetNetworkUsageContext(ctxOf(cmd), network.NewGetNetworkUsageParams().WithID(args[0]), nil))
			if err != nil {
				return err
			}
			return c.print(cmd, v, []column{col("NETWORK", "networkID"), col("AVAILABLE", "available"), col("USED", "used"),
				col("USED PREFIXES", "usedPrefixes")})
		},
	}
	var find wire.NetworkFindRequest
	findCmd := &cobra.Command{
		Use: "find", Short: "Find networks by partition, project, type, parent or prefix", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			res, err := api.Network.FindNetworksContext(ctxOf(cmd), network.NewFindNetworksParams().WithBody(&find), nil)
			if err != nil {
				return err
			}
			return c.print(cmd, res.Payload.Items, r.columns)
		},
	}
	ff := findCmd.Flags()
	ff.StringVar(&find.PartitionID, "partition", "", "partition")
	ff.StringVar(&find.ProjectID, "project", "", "project")
	ff.StringVar(&find.Type, "type", "", "type: super, underlay, external, private, private-shared")
	ff.StringVar(&find.ParentNetworkID, "parent", "", "parent network")
	ff.StringVar(&find.Prefix, "prefix", "", "exact prefix")
	return []*cobra.Command{allocate, free, usage, findCmd}
}

var ipColumns = []column{col("ADDRESS", "address"), nameCol, col("NETWORK", "networkID"), col("PROJECT", "projectID"),
	col("TYPE", "type"), col("MACHINE", "machineID"), col("TAGS", "tags").onlyWide(), descCol.onlyWide()}

func ipResource() *resource {
	return &resource{
		name: "ip", short: "IPs: addresses of projects, for machines and load balancers", columns: ipColumns,
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.IP.ListIPsContext(ctx, ip.NewListIPsParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.IP.GetIPContext(ctx, ip.NewGetIPParams().WithID(id), nil))
		},
		// create takes an allocation request {networkID, projectID, address, ...}.
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.IPAllocateRequest](body)
			if err != nil {
				return nil, err
			}
			return payload(c.IP.AllocateIPContext(ctx, ip.NewAllocateIPParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.IP](body)
			if err != nil {
				return nil, err
			}
			return payload(c.IP.UpdateIPContext(ctx, ip.NewUpdateIPParams().WithID(id).WithBody(b), nil))
		},
		del:     releaseIP,
		actions: ipActions,
	}
}

func releaseIP(ctx context.Context, c api, id string) (any, error) {
	return payload(c.IP.ReleaseIPContext(ctx, ip.NewReleaseIPParams().WithID(id), nil))
}

func ipActions(c *cli, r *resource) []*cobra.Command {
	var req wire.IPAllocateRequest
	allocate := &cobra.Command{
		Use: "allocate [ADDRESS]", Short: "Allocate an IP: the given address or the next free one", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				req.Address = args[0]
			}
			v, err := payload(api.IP.AllocateIPContext(ctxOf(cmd), ip.NewAllocateIPParams().WithBody(&req), nil))
			if err != nil {
				return err
			}
			return c.print(cmd, v, r.columns)
		},
	}
	f := allocate.Flags()
	f.StringVar(&req.NetworkID, "network", "", "network")
	f.StringVar(&req.ProjectID, "project", "", "project (default: the token's)")
	f.StringVar(&req.Name, "name", "", "name")
	f.StringVar(&req.Description, "description", "", "description")
	f.StringVar(&req.Type, "type", "", "ephemeral (default) or static")
	f.StringSliceVar(&req.Tags, "tag", nil, "tag, repeatable")
	_ = allocate.MarkFlagRequired("network")

	release := &cobra.Command{
		Use: "release ADDRESS...", Short: "Release IPs", Args: cobra.MinimumNArgs(1), ValidArgsFunction: c.completeIDs(r),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				v, err := releaseIP(ctxOf(cmd), api, id)
				if err != nil {
					return err
				}
				if err := c.printDone(cmd, v, r, id, "released"); err != nil {
					return err
				}
			}
			return nil
		},
	}
	var find wire.IPFindRequest
	findCmd := &cobra.Command{
		Use: "find", Short: "Find IPs by network, project, machine, type or tag", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			res, err := api.IP.FindIPsContext(ctxOf(cmd), ip.NewFindIPsParams().WithBody(&find), nil)
			if err != nil {
				return err
			}
			return c.print(cmd, res.Payload.Items, r.columns)
		},
	}
	ff := findCmd.Flags()
	ff.StringVar(&find.NetworkID, "network", "", "network")
	ff.StringVar(&find.ProjectID, "project", "", "project")
	ff.StringVar(&find.MachineID, "machine", "", "machine")
	ff.StringVar(&find.Type, "type", "", "ephemeral or static")
	ff.StringVar(&find.Tag, "tag", "", "tag")
	return []*cobra.Command{allocate, release, findCmd}
}
