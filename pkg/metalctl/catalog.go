package metalctl

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/metalforge/metalforge/pkg/client/metalapi/filesystemlayout"
	"github.com/metalforge/metalforge/pkg/client/metalapi/image"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/project"
	"github.com/metalforge/metalforge/pkg/client/metalapi/size"
	"github.com/metalforge/metalforge/pkg/client/metalapi/sizereservation"
	sw "github.com/metalforge/metalforge/pkg/client/metalapi/switch_operations"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// payload unwraps the body of a generated success response.
func payload[P any, R interface{ GetPayload() P }](r R, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return r.GetPayload(), nil
}

// resources are all resources, in the order of the help text.
func (c *cli) resources() []*resource {
	return []*resource{
		partitionResource(), sizeResource(), sizeReservationResource(), imageResource(), layoutResource(),
		projectResource(), switchResource(), networkResource(), ipResource(), machineResource(), tokenResource(),
	}
}

var (
	idCol   = col("ID", "id")
	nameCol = col("NAME", "name")
	descCol = col("DESCRIPTION", "description")
)

func partitionResource() *resource {
	return &resource{
		name: "partition", kind: "Partition", short: "Partitions: failure domains with their boot configuration",
		columns: []column{idCol, nameCol, descCol, col("KERNEL", "boot.kernelURL").onlyWide(), col("INITRD", "boot.initrdURL").onlyWide(),
			col("MGMT SERVICE", "mgmtServiceAddress").onlyWide(), col("LABELS", "labels").onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.Partition.ListPartitionsContext(ctx, partition.NewListPartitionsParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Partition.GetPartitionContext(ctx, partition.NewGetPartitionParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.Partition](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.Partition](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Partition.UpdatePartitionContext(ctx, partition.NewUpdatePartitionParams().WithID(id).WithBody(b), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Partition.DeletePartitionContext(ctx, partition.NewDeletePartitionParams().WithID(id), nil))
		},
	}
}

// constraints renders the constraints of a size: "cores 1-4, memory 1GiB-16GiB".
func constraints(o obj) string {
	var parts []string
	for _, c := range list(o, "constraints") {
		typ := cell(c["type"])
		lo, hi := number(c, "min"), number(c, "max")
		r := fmt.Sprintf("%d-%d", lo, hi)
		if typ == "memory" || typ == "storage" {
			r = bytesOf(lo) + "-" + bytesOf(hi)
		}
		if id := cell(c["identifier"]); id != "" {
			typ += "(" + id + ")"
		}
		parts = append(parts, typ+" "+r)
	}
	return strings.Join(parts, ", ")
}

func sizeResource() *resource {
	return &resource{
		name: "size", kind: "Size", short: "Sizes: hardware classes of machines",
		columns: []column{idCol, nameCol, fn("CONSTRAINTS", constraints), descCol.onlyWide(), col("LABELS", "labels").onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.Size.ListSizesContext(ctx, size.NewListSizesParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Size.GetSizeContext(ctx, size.NewGetSizeParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.Size](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Size.CreateSizeContext(ctx, size.NewCreateSizeParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.Size](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Size.UpdateSizeContext(ctx, size.NewUpdateSizeParams().WithID(id).WithBody(b), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Size.DeleteSizeContext(ctx, size.NewDeleteSizeParams().WithID(id), nil))
		},
	}
}

func sizeReservationResource() *resource {
	sr := func(c api) sizereservation.ClientService { return c.Sizereservation }
	return &resource{
		name: "sizereservation", kind: "SizeReservation", aliases: []string{"reservation"},
		short:   "Size reservations: machines of a size kept for a project",
		columns: []column{idCol, col("SIZE", "sizeID"), col("AMOUNT", "amount"), col("PROJECT", "projectID"), col("PARTITIONS", "partitionIDs"), descCol.onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := sr(c).ListSizeReservationsContext(ctx, sizereservation.NewListSizeReservationsParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(sr(c).GetSizeReservationContext(ctx, sizereservation.NewGetSizeReservationParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.SizeReservation](body)
			if err != nil {
				return nil, err
			}
			return payload(sr(c).CreateSizeReservationContext(ctx, sizereservation.NewCreateSizeReservationParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.SizeReservation](body)
			if err != nil {
				return nil, err
			}
			return payload(sr(c).UpdateSizeReservationContext(ctx, sizereservation.NewUpdateSizeReservationParams().WithID(id).WithBody(b), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(sr(c).DeleteSizeReservationContext(ctx, sizereservation.NewDeleteSizeReservationParams().WithID(id), nil))
		},
	}
}

func imageResource() *resource {
	return &resource{
		name: "image", kind: "Image", short: "Images: operating systems to install",
		columns: []column{idCol, nameCol, col("OS", "os"), col("VERSION", "osVersion"), col("FEATURES", "features"),
			col("CLASSIFICATION", "classification"), fn("EXPIRES", func(o obj) string { return timestamp(cell(o["expirationDate"])) }),
			col("URL", "url").onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.Image.ListImagesContext(ctx, image.NewListImagesParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Image.GetImageContext(ctx, image.NewGetImageParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.Image](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Image.CreateImageContext(ctx, image.NewCreateImageParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.Image](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Image.UpdateImageContext(ctx, image.NewUpdateImageParams().WithID(id).WithBody(b), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Image.DeleteImageContext(ctx, image.NewDeleteImageParams().WithID(id), nil))
		},
	}
}

// mounts renders the filesystems of a layout: "/=/dev/vda2(ext4)".
func mounts(o obj) string {
	var parts []string
	for _, f := range list(o, "filesystems") {
		if p := cell(f["path"]); p != "" {
			parts = append(parts, p+"="+cell(f["device"])+"("+cell(f["format"])+")")
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func layoutResource() *resource {
	fl := func(c api) filesystemlayout.ClientService { return c.Filesystemlayout }
	return &resource{
		name: "filesystemlayout", kind: "FilesystemLayout", aliases: []string{"fsl"},
		short: "Filesystem layouts: how disks are partitioned and mounted",
		columns: []column{idCol, nameCol, col("SIZES", "constraints.sizes"), col("IMAGES", "constraints.images"),
			fn("MOUNTS", mounts).onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := fl(c).ListFilesystemLayoutsContext(ctx, filesystemlayout.NewListFilesystemLayoutsParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(fl(c).GetFilesystemLayoutContext(ctx, filesystemlayout.NewGetFilesystemLayoutParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.FilesystemLayout](body)
			if err != nil {
				return nil, err
			}
			return payload(fl(c).CreateFilesystemLayoutContext(ctx, filesystemlayout.NewCreateFilesystemLayoutParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.FilesystemLayout](body)
			if err != nil {
				return nil, err
			}
			return payload(fl(c).UpdateFilesystemLayoutContext(ctx, filesystemlayout.NewUpdateFilesystemLayoutParams().WithID(id).WithBody(b), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(fl(c).DeleteFilesystemLayoutContext(ctx, filesystemlayout.NewDeleteFilesystemLayoutParams().WithID(id), nil))
		},
	}
}

func projectResource() *resource {
	return &resource{
		name: "project", kind: "Project", short: "Projects: tenants' ownership and quotas",
		columns: []column{idCol, nameCol, col("TENANT", "tenant"), descCol.onlyWide(), col("QUOTAS", "quotas").onlyWide(),
			col("LABELS", "labels").onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.Project.ListProjectsContext(ctx, project.NewListProjectsParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Project.GetProjectContext(ctx, project.NewGetProjectParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.Project](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Project.CreateProjectContext(ctx, project.NewCreateProjectParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.Project](body)
			if err != nil {
				return nil, err
			}
			return payload(c.Project.UpdateProjectContext(ctx, project.NewUpdateProjectParams().WithID(id).WithBody(b), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Project.DeleteProjectContext(ctx, project.NewDeleteProjectParams().WithID(id), nil))
		},
	}
}

func switchResource() *resource {
	return &resource{
		name: "switch", kind: "Switch", short: "Switches: the leaves of a partition",
		columns: []column{idCol, col("PARTITION", "partitionID"), col("RACK", "rackID"),
			fn("OS", func(o obj) string {
				return strings.TrimSpace(cell(lookup(o, "os.vendor")) + " " + cell(lookup(o, "os.version")))
			}),
			fn("PORTS", func(o obj) string { return fmt.Sprint(len(list(o, "ports"))) }),
			fn("CONNECTIONS", func(o obj) string { return fmt.Sprint(len(list(o, "connections"))) }),
			fn("LAST SYNC", func(o obj) string { return timestamp(cell(lookup(o, "lastSync.time"))) }),
			col("SYNC ERROR", "lastSync.error").onlyWide(), col("MGMT IP", "managementIP").onlyWide()},
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.SwitchOperations.ListSwitchsContext(ctx, sw.NewListSwitchsParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.SwitchOperations.GetSwitchContext(ctx, sw.NewGetSwitchParams().WithID(id), nil))
		},
		create: func(ctx context.Context, c api, body []byte) (any, error) {
			b, err := decode[wire.Switch](body)
			if err != nil {
				return nil, err
			}
			return payload(c.SwitchOperations.CreateSwitchContext(ctx, sw.NewCreateSwitchParams().WithBody(b), nil))
		},
		update: func(ctx context.Context, c api, id string, body []byte) (any, error) {
			b, err := decode[wire.Switch](body)
			if err != nil {
				return nil, err
			}
			return payload(c.SwitchOperations.UpdateSwitchContext(ctx, sw.NewUpdateSwitchParams().WithID(id).WithBody(b), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.SwitchOperations.DeleteSwitchContext(ctx, sw.NewDeleteSwitchParams().WithID(id), nil))
		},
	}
}
