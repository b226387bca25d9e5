package worker_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	v1beta1constants "github.com/gardener/gardener/pkg/apis/core/v1beta1/constants"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	machinev1alpha1 "github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/controllers/infrastructure/infratest"
	"github.com/metalforge/metalforge/controllers/worker"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/mcm"
	"github.com/metalforge/metalforge/pkg/mcm/mcmtest"
)

// TestWorkerWithMCM is the worker path end to end: gardener's Worker controller with the delegate
// writes the MachineClass and MachineDeployment, the real machine-controller-manager (its
// machine-deployment controller and the provider controller with pkg/mcm's driver, as processes)
// turns them into a Machine, and the driver allocates a waiting metal-api machine with the class's
// partition, size, image, networks, tags, SSH key and user data; the Worker's reconcile then
// succeeds, and deleting the Worker frees the machine and removes the Worker. MCM runs without a
// target cluster (no kubelet here), in which mode a created machine counts as available.
func TestWorkerWithMCM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs two MCM processes")
	}
	f := infratest.Start(t)
	f.WaitingMachine(1)
	shoot := infratest.Shoot{Name: "mcm", UID: "uid-mcm"}
	ns := shoot.Namespace()
	ctx := t.Context()
	k := kube(t)
	private := privateNetwork(t, f, shoot)
	const userData = "#cloud-config\nhostname: <<MACHINE_NAME>>\n"
	createShoot(t, k, f, shoot, userData)
	w := &extensionsv1alpha1.Worker{
		ObjectMeta: metav1.ObjectMeta{Name: "worker", Namespace: ns,
			Annotations: map[string]string{v1beta1constants.GardenerOperation: v1beta1constants.GardenerOperationReconcile}},
		Spec: extensionsv1alpha1.WorkerSpec{
			DefaultSpec:  extensionsv1alpha1.DefaultSpec{Type: infrastructure.Type},
			Region:       "fra",
			SecretRef:    corev1.SecretReference{Name: "cloudprovider", Namespace: ns},
			SSHPublicKey: []byte(sshKey),
			Pools: []extensionsv1alpha1.WorkerPool{{
				Name: "pool", MachineType: infratest.Size, Minimum: 1, Maximum: 1,
				MaxSurge: intstr.FromInt32(1), MaxUnavailable: intstr.FromInt32(0),
				MachineImage:        extensionsv1alpha1.MachineImage{Name: infratest.ImageName, Version: infratest.ImageVersion},
				UserDataSecretRef:   corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "user-data"}, Key: "cloud-config"},
				NodeAgentSecretName: new("gardener-node-agent-pool-7e8f9"),
			}},
		},
	}
	check(t, k.Create(ctx, w))

	startManager(t)

	begin := time.Now()
	mcmtest.Start(t, env.Config, ns)

	var m machinev1alpha1.Machine
	clienttest.WaitFor(t, 2*time.Minute, "a Machine with a provider ID", func() (bool, error) {
		var l machinev1alpha1.MachineList
		if err := k.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, x := range l.Items {
			if x.Spec.ProviderID != "" {
				m = x
				return true, nil
			}
		}
		return false, fmt.Errorf("%d machines, none with a provider id", len(l.Items))
	})
	t.Logf("Worker → MachineDeployment → MCM → metal-api allocation in %v", time.Since(begin).Round(time.Millisecond))
	id, err := mcm.ParseProviderID(m.Spec.ProviderID)
	check(t, err)
	r, err := f.Admin.Machine.GetMachineContext(ctx, machineops.NewGetMachineParams().WithID(id), nil)
	check(t, err)
	a := r.Payload.Allocation
	if a == nil {
		t.Fatalf("machine %s is not allocated", id)
	}
	var nets []string
	for _, n := range a.Networks {
		nets = append(nets, n.NetworkID)
	}
	if a.ProjectID != f.Project || a.ImageID != infratest.ImageName+"-"+infratest.ImageVersion || r.Payload.SizeID != infratest.Size ||
		r.Payload.PartitionID != infratest.Partition || !slices.Contains(nets, private) ||
		!slices.Equal(a.SSHPubKeys, []string{sshKey}) || a.UserData != strings.ReplaceAll(userData, "<<MACHINE_NAME>>", m.Name) {
		t.Errorf("allocation of %s: project %s image %s size %s partition %s networks %v keys %v user data %q",
			id, a.ProjectID, a.ImageID, r.Payload.SizeID, r.Payload.PartitionID, nets, a.SSHPubKeys, a.UserData)
	}
	for _, tag := range []string{infrastructure.ClusterTag(shoot.UID), worker.TagPool + "pool", mcm.TagMachine + m.Name} {
		if !slices.Contains(r.Payload.Tags, tag) {
			t.Errorf("machine %s tags %v lack %s", id, r.Payload.Tags, tag)
		}
	}

	// gardener's generic actuator waits (polling every 5s) until MCM reports the deployment
	// available, then the Worker's reconcile succeeds.
	clienttest.WaitFor(t, 60*time.Second, "worker reconciled", func() (bool, error) {
		if err := k.Get(ctx, client.ObjectKeyFromObject(w), w); err != nil {
			return false, err
		}
		lo := w.Status.LastOperation
		return lo != nil && lo.State == gardencorev1beta1.LastOperationStateSucceeded, fmt.Errorf("last operation %+v", lo)
	})
	t.Logf("worker reconciled after %v", time.Since(begin).Round(time.Millisecond))

	// Deleting the Worker deletes the MachineDeployment; MCM deletes the Machine, the driver frees
	// the metal-api machine, and the Worker's finalizer goes.
	begin = time.Now()
	check(t, k.Delete(ctx, w))
	clienttest.WaitFor(t, 2*time.Minute, "worker deleted and machine freed", func() (bool, error) {
		err := k.Get(ctx, client.ObjectKeyFromObject(w), w)
		if !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("worker still there (%v), last operation %+v", err, w.Status.LastOperation)
		}
		r, err := f.Admin.Machine.GetMachineContext(ctx, machineops.NewGetMachineParams().WithID(id), nil)
		if err != nil {
			return false, err
		}
		return r.Payload.Allocation == nil, fmt.Errorf("machine %s still allocated", id)
	})
	t.Logf("worker deleted, machine freed after %v", time.Since(begin).Round(time.Millisecond))
}
