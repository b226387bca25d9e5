package rest

import (
	"fmt"
	"slices"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
)

// NetworkFindRequest filters networks.
type NetworkFindRequest struct {
	PartitionID     string `json:"partitionID,omitempty"`
	ProjectID       string `json:"projectID,omitempty"`
	Type            string `json:"type,omitempty"`
	ParentNetworkID string `json:"parentNetworkID,omitempty"`
	Prefix          string `json:"prefix,omitempty"`
}

// IPFindRequest filters IPs.
type IPFindRequest struct {
	NetworkID string `json:"networkID,omitempty"`
	ProjectID string `json:"projectID,omitempty"`
	MachineID string `json:"machineID,omitempty"`
	Type      string `json:"type,omitempty"`
	Tag       string `json:"tag,omitempty"`
}

func (s *Server) networkRoutes() []route {
	return []route{
		op("GET", "/v1/network", "listNetworks", "List networks visible to the caller", user, s.listNetworks).withQuery("limit", "cursor"),
		op("POST", "/v1/network/find", "findNetworks", "Find networks by filters", user, s.findNetworks).withQuery("limit", "cursor"),
		op("GET", "/v1/network/{id}", "getNetwork", "Get a network", user, s.getNetwork),
		op("GET", "/v1/network/{id}/usage", "getNetworkUsage", "Address and prefix usage of a network", user, s.networkUsage),
		op("POST", "/v1/network", "createNetwork", "Create a network with given prefixes", admin, s.createNetwork).created(),
		op("PUT", "/v1/network/{id}", "updateNetwork", "Update a network", admin, s.updateNetwork),
		op("POST", "/v1/network/allocate", "allocateNetwork", "Allocate a private network from the partition's super network", user, s.allocateNetwork).created(),
		op("DELETE", "/v1/network/{id}", "deleteNetwork", "Delete or free a network", user, s.deleteNetwork),
	}
}

func (s *Server) ipRoutes() []route {
	return []route{
		op("GET", "/v1/ip", "listIPs", "List IPs visible to the caller", user, s.listIPs).withQuery("limit", "cursor"),
		op("POST", "/v1/ip/find", "findIPs", "Find IPs by filters", user, s.findIPs).withQuery("limit", "cursor"),
		op("GET", "/v1/ip/{id}", "getIP", "Get an IP", user, s.getIP),
		op("POST", "/v1/ip/allocate", "allocateIP", "Allocate an IP, a given one or the next free", user, s.allocateIP).created(),
		op("PUT", "/v1/ip/{id}", "updateIP", "Update name, description, tags and type of an IP", user, s.updateIP),
		op("DELETE", "/v1/ip/{id}", "releaseIP", "Release an IP", user, s.releaseIP),
	}
}

// networkVisible: shared networks (no project) are visible to every user, private ones to their project.
func networkVisible(c *call, n *api.Network) bool { return c.p.CanRead(n.ProjectID) }

func (s *Server) listNetworks(c *call, _ *none) (*api.Page[*api.Network], error) {
	return listPage(c, store.Tx.Networks, store.Query{}, func(n *api.Network) bool { return networkVisible(c, n) })
}

func (s *Server) findNetworks(c *call, req *NetworkFindRequest) (*api.Page[*api.Network], error) {
	q := store.Query{Partition: req.PartitionID, Project: req.ProjectID, Key1: req.Type, Key2: req.ParentNetworkID}
	if req.ProjectID != "" && !c.p.CanRead(req.ProjectID) {
		return nil, fmt.Errorf("find networks of project %s: %w", req.ProjectID, apierror.ErrForbidden)
	}
	if req.Prefix != "" {
		var id string
		err := s.cfg.Store.Read(c.ctx, func(tx store.Tx) error {
			var err error
			id, err = tx.Lookup(c.ctx, store.KindNetwork, "prefix:"+req.Prefix)
			return err
		})
		if err != nil {
			return &api.Page[*api.Network]{Items: []*api.Network{}}, nil
		}
		n, err := s.visibleNetwork(c, id)
		if err != nil {
			return &api.Page[*api.Network]{Items: []*api.Network{}}, nil
		}
		return &api.Page[*api.Network]{Items: []*api.Network{n}}, nil
	}
	return listPage(c, store.Tx.Networks, q, func(n *api.Network) bool { return networkVisible(c, n) })
}

func (s *Server) visibleNetwork(c *call, id string) (*api.Network, error) {
	var n *api.Network
	err := s.cfg.Store.Read(c.ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.Networks().Get(c.ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !networkVisible(c, n) {
		return nil, notFound("network", id)
	}
	return n, nil
}

func (s *Server) getNetwork(c *call, _ *none) (*api.Network, error) {
	return s.visibleNetwork(c, c.path("id"))
}

func (s *Server) networkUsage(c *call, _ *none) (*api.NetworkUsage, error) {
	n, err := s.visibleNetwork(c, c.path("id"))
	if err != nil {
		return nil, err
	}
	var u *api.NetworkUsage
	err = s.cfg.Store.Read(c.ctx, func(tx store.Tx) error {
		u, err = network.Usage(c.ctx, tx, n)
		return err
	})
	return u, err
}

func (s *Server) createNetwork(c *call, n *api.Network) (*api.Network, error) {
	if n.ID != "" {
		if err := validID(n.ID); err != nil {
			return nil, err
		}
	}
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		return network.Create(c.ctx, tx, n)
	})
	return n, err
}

func (s *Server) updateNetwork(c *call, n *api.Network) (*api.Network, error) {
	if n.ID == "" {
		n.ID = c.path("id")
	}
	if n.ID != c.path("id") {
		return nil, apierror.Invalid("id %q in the body does not match %q in the path", n.ID, c.path("id"))
	}
	var out *api.Network
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		var err error
		out, err = network.Update(c.ctx, tx, n)
		return err
	})
	return out, err
}

func (s *Server) allocateNetwork(c *call, req *api.NetworkAllocateRequest) (*api.Network, error) {
	if req.ProjectID == "" {
		req.ProjectID = c.p.ProjectID
	}
	if !c.p.CanWrite(req.ProjectID) {
		return nil, fmt.Errorf("allocate network in project %q: %w", req.ProjectID, apierror.ErrForbidden)
	}
	var n *api.Network
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		var err error
		n, err = network.AllocatePrivate(c.ctx, tx, *req)
		return err
	})
	return n, err
}

func (s *Server) deleteNetwork(c *call, _ *none) (*api.Network, error) {
	n, err := s.visibleNetwork(c, c.path("id"))
	if err != nil {
		return nil, err
	}
	private := n.Type == api.NetworkPrivate || n.Type == api.NetworkPrivateShared
	if !c.p.IsAdmin() && !(private && c.p.CanWrite(n.ProjectID)) {
		return nil, fmt.Errorf("delete network %s: %w", n.ID, apierror.ErrForbidden)
	}
	var out *api.Network
	err = s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		var err error
		out, err = network.Delete(c.ctx, tx, n.ID)
		return err
	})
	return out, err
}

func ipVisible(c *call, ip *api.IP) bool {
	return c.p.IsAdmin() || ip.ProjectID != "" && c.p.CanRead(ip.ProjectID)
}

func (s *Server) listIPs(c *call, _ *none) (*api.Page[*api.IP], error) {
	q := store.Query{}
	if !c.p.IsAdmin() && c.p.Role != api.RoleService {
		q.Project = c.p.ProjectID
	}
	return listPage(c, store.Tx.IPs, q, func(ip *api.IP) bool { return ipVisible(c, ip) })
}

func (s *Server) findIPs(c *call, req *IPFindRequest) (*api.Page[*api.IP], error) {
	q := store.Query{Project: req.ProjectID, Key1: req.NetworkID, Key2: req.MachineID, Key3: req.Type}
	if !c.p.IsAdmin() && c.p.Role != api.RoleService {
		if q.Project != "" && q.Project != c.p.ProjectID {
			return nil, fmt.Errorf("find ips of project %s: %w", q.Project, apierror.ErrForbidden)
		}
		q.Project = c.p.ProjectID
	}
	return listPage(c, store.Tx.IPs, q, func(ip *api.IP) bool {
		if req.Tag != "" && !slices.Contains(ip.Tags, req.Tag) {
			return false
		}
		return ipVisible(c, ip)
	})
}

func (s *Server) visibleIP(c *call) (*api.IP, error) {
	var ip *api.IP
	err := s.cfg.Store.Read(c.ctx, func(tx store.Tx) error {
		var err error
		ip, err = tx.IPs().Get(c.ctx, c.path("id"))
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ipVisible(c, ip) {
		return nil, notFound("ip", c.path("id"))
	}
	return ip, nil
}

func (s *Server) getIP(c *call, _ *none) (*api.IP, error) { return s.visibleIP(c) }

func (s *Server) allocateIP(c *call, req *api.IPAllocateRequest) (*api.IP, error) {
	if req.ProjectID == "" {
		req.ProjectID = c.p.ProjectID
	}
	if !c.p.CanWrite(req.ProjectID) {
		return nil, fmt.Errorf("allocate ip in project %q: %w", req.ProjectID, apierror.ErrForbidden)
	}
	var ip *api.IP
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		if err := network.CheckIPQuota(c.ctx, tx, req.ProjectID, 1); err != nil {
			return err
		}
		var err error
		ip, err = network.AllocateIP(c.ctx, tx, *req, "")
		return err
	})
	return ip, err
}

// writableIP reads the IP of the path inside tx, hidden from other projects and writable only by
// the project's editors.
func writableIP(c *call, tx store.Tx) (*api.IP, error) {
	ip, err := tx.IPs().Get(c.ctx, c.path("id"))
	if err != nil {
		return nil, err
	}
	if !ipVisible(c, ip) {
		return nil, notFound("ip", ip.ID)
	}
	if !c.p.CanWrite(ip.ProjectID) {
		return nil, fmt.Errorf("change ip %s: %w", ip.ID, apierror.ErrForbidden)
	}
	return ip, nil
}

func (s *Server) updateIP(c *call, in *api.IP) (*api.IP, error) {
	var out *api.IP
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		ip, err := writableIP(c, tx)
		if err != nil {
			return err
		}
		if in.Version != ip.Version {
			return fmt.Errorf("ip %s has version %d, the update was based on %d: %w", ip.ID, ip.Version, in.Version, apierror.ErrStale)
		}
		if in.Type != "" && in.Type != api.IPEphemeral && in.Type != api.IPStatic {
			return apierror.Invalid("ip type %q is not ephemeral or static", in.Type)
		}
		if (in.Address != "" && in.Address != ip.Address) || (in.NetworkID != "" && in.NetworkID != ip.NetworkID) ||
			(in.ProjectID != "" && in.ProjectID != ip.ProjectID) {
			return apierror.Invalid("address, network and project of an ip can't change")
		}
		ip.Name, ip.Description, ip.Tags = in.Name, in.Description, in.Tags
		if in.Type != "" {
			ip.Type = in.Type
		}
		out = ip
		return tx.IPs().Update(c.ctx, ip)
	})
	return out, err
}

func (s *Server) releaseIP(c *call, _ *none) (*api.IP, error) {
	var out *api.IP
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		ip, err := writableIP(c, tx)
		if err != nil {
			return err
		}
		out, err = network.ReleaseIP(c.ctx, tx, ip.ID, false)
		return err
	})
	return out, err
}
