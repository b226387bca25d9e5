package worker

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

// UpdateMachineImagesStatus writes the images in use to the Worker's providerStatus (a metal
// WorkerStatus), so a pool keeps its image after the version left the cloud profile.
func (d *delegate) UpdateMachineImagesStatus(ctx context.Context) error {
	if err := d.generate(ctx); err != nil {
		return err
	}
	raw, err := d.codec.EncodeJSON(&metal.WorkerStatus{MachineImages: d.images})
	if err != nil {
		return err
	}
	patch := client.MergeFrom(d.worker.DeepCopy())
	d.worker.Status.ProviderStatus = &runtime.RawExtension{Raw: raw}
	if err := d.client.Status().Patch(ctx, d.worker, patch); err != nil {
		return fmt.Errorf("patch worker provider status: %w", err)
	}
	return nil
}
