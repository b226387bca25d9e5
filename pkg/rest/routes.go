package rest

import (
	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// table is the whole REST interface.
func (s *Server) table() []route {
	var rs []route
	rs = append(rs, op("GET", "/v1/version", "getVersion", "Version of metal-api and its store", public, s.version))
	rs = append(rs, resource[api.Partition, *api.Partition]{
		name: "partition", title: "Partition", table: store.Tx.Partitions, read: user, write: admin,
		validate: validatePartition, inUse: partitionInUse,
	}.routes()...)
	rs = append(rs, resource[api.Project, *api.Project]{
		name: "project", title: "Project", table: store.Tx.Projects, read: user, write: user, generateID: true, ownerOnly: true,
		project: func(p *api.Project) string { return p.ID }, validate: validateProject, inUse: projectInUse,
	}.routes()...)
	rs = append(rs, resource[api.Size, *api.Size]{
		name: "size", title: "Size", table: store.Tx.Sizes, read: user, write: admin, validate: validateSize, inUse: sizeInUse,
	}.routes()...)
	rs = append(rs, resource[api.SizeReservation, *api.SizeReservation]{
		name: "sizereservation", title: "SizeReservation", table: store.Tx.SizeReservations, read: user, write: admin, generateID: true,
		project: func(r *api.SizeReservation) string { return r.ProjectID }, validate: validateReservation,
	}.routes()...)
	rs = append(rs, resource[api.Image, *api.Image]{
		name: "image", title: "Image", table: store.Tx.Images, read: user, write: admin, validate: validateImage, inUse: imageInUse,
	}.routes()...)
	rs = append(rs, resource[api.FilesystemLayout, *api.FilesystemLayout]{
		name: "filesystemlayout", title: "FilesystemLayout", table: store.Tx.FilesystemLayouts, read: user, write: admin, validate: validateLayout,
	}.routes()...)
	rs = append(rs, resource[api.Switch, *api.Switch]{
		name: "switch", title: "Switch", table: store.Tx.Switches, read: service, write: admin, validate: validateSwitch,
	}.routes()...)
	rs = append(rs, s.networkRoutes()...)
	rs = append(rs, s.ipRoutes()...)
	rs = append(rs, s.machineRoutes()...)
	rs = append(rs, s.bmcRoutes()...)
	rs = append(rs, s.tokenRoutes()...)
	rs = append(rs, s.fabricRoutes()...)
	for i := range rs {
		rs[i].tag = tagOf(rs[i].path)
	}
	return rs
}

func (s *Server) version(*call, *none) (*api.Version, error) {
	return &api.Version{Version: s.cfg.Version, Store: s.cfg.Store.Backend()}, nil
}
