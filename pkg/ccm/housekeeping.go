package ccm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/metalforge/metalforge/pkg/client/wire"
)

// AnnotationLabels on a Node lists the label keys housekeeping set from its machine, so that it can
// remove them when the machine loses the tag.
const AnnotationLabels = "machine.metalforge.io/labels"

// ReasonNoClusterTag is the Event on a Node whose machine lacks the cluster tag.
const ReasonNoClusterTag = "MachineWithoutClusterTag"

// Housekeeping keeps node labels in step with the machines: ASN, rack, size and partition, and every
// machine tag of the form key=value that is a valid label. It also warns (Event on the Node) about
// machines without the cluster's tag: metal-api has no call to add a tag to an allocated machine,
// the tag is set when the machine is allocated for the cluster.
type Housekeeping struct {
	c        *Cloud
	kube     kubernetes.Interface
	nodes    corelisters.NodeLister
	synced   cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      logr.Logger
}

// Housekeeping returns the node label controller; the informer must be started by the caller.
func (c *Cloud) Housekeeping(kube kubernetes.Interface, nodes coreinformers.NodeInformer, recorder record.EventRecorder) (*Housekeeping, error) {
	h := &Housekeeping{
		c: c, kube: kube, nodes: nodes.Lister(), synced: nodes.Informer().HasSynced, recorder: recorder,
		log: c.log.WithName("housekeeping"),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "metal-housekeeping"}),
	}
	_, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: h.enqueue,
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			// Status heartbeats don't matter; a new provider ID or label edits do.
			if ok1 && ok2 && (o.Spec.ProviderID != n.Spec.ProviderID || !maps.Equal(o.Labels, n.Labels)) {
				h.enqueue(cur)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	return h, nil
}

func (h *Housekeeping) enqueue(obj any) {
	if n, ok := obj.(*corev1.Node); ok && strings.HasPrefix(n.Spec.ProviderID, ProviderName+"://") {
		h.queue.Add(n.Name)
	}
}

// Run works until ctx ends: on node changes, and over all nodes every HousekeepingInterval.
func (h *Housekeeping) Run(ctx context.Context) {
	defer h.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), h.synced) {
		return
	}
	go func() {
		tick := time.NewTicker(h.c.cfg.HousekeepingInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				nodes, err := h.nodes.List(labels.Everything())
				if err != nil {
					h.log.Error(err, "listing nodes failed")
					continue
				}
				for _, n := range nodes {
					h.enqueue(n)
				}
			}
		}
	}()
	go func() {
		<-ctx.Done()
		h.queue.ShutDown()
	}()
	for h.next(ctx) {
	}
}

func (h *Housekeeping) next(ctx context.Context) bool {
	name, quit := h.queue.Get()
	if quit {
		return false
	}
	defer h.queue.Done(name)
	if err := h.sync(ctx, name); err != nil {
		h.log.Error(err, "node housekeeping failed", "node", name)
		h.queue.AddRateLimited(name)
		return true
	}
	h.queue.Forget(name)
	return true
}

// sync sets the machine's labels on one node and removes the ones it set earlier that are gone.
func (h *Housekeeping) sync(ctx context.Context, name string) error {
	node, err := h.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	id, err := ParseProviderID(node.Spec.ProviderID)
	if err != nil {
		return nil // not ours
	}
	m, err := h.c.metal.machine(ctx, id)
	if errors.Is(err, errNotFound) {
		return nil // the node lifecycle controller deletes it
	}
	if err != nil {
		return err
	}
	if !slices.Contains(m.Tags, h.c.metal.clusterTag()) && h.recorder != nil {
		h.recorder.Eventf(node, corev1.EventTypeWarning, ReasonNoClusterTag,
			"Machine %s lacks the tag %s: allocate the cluster's machines with it", m.ID, h.c.metal.clusterTag())
	}
	patch, ok := labelPatch(node, desiredLabels(m))
	if !ok {
		return nil
	}
	if _, err := h.kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: managedBy}); err != nil {
		return fmt.Errorf("label node %s: %w", name, err)
	}
	h.log.V(1).Info("labelled node", "node", name, "machine", m.ID)
	return nil
}

// desiredLabels: the machine labels plus its key=value tags that are valid labels.
func desiredLabels(m *wire.Machine) map[string]string {
	want := map[string]string{}
	for _, t := range m.Tags {
		k, v, ok := strings.Cut(t, "=")
		if ok && len(validation.IsQualifiedName(k)) == 0 && len(validation.IsValidLabelValue(v)) == 0 {
			want[k] = v
		}
	}
	maps.Copy(want, machineLabels(m))
	return want
}

// labelPatch is the merge patch that makes the node carry want and drops the labels set before
// (listed in AnnotationLabels) that want no longer has; ok is false when nothing changes.
func labelPatch(node *corev1.Node, want map[string]string) ([]byte, bool) {
	set := map[string]any{}
	for k, v := range want {
		if cur, ok := node.Labels[k]; !ok || cur != v {
			set[k] = v
		}
	}
	for _, k := range strings.Split(node.Annotations[AnnotationLabels], ",") {
		if _, keep := want[k]; k != "" && !keep {
			if _, has := node.Labels[k]; has {
				set[k] = nil
			}
		}
	}
	keys := strings.Join(slices.Sorted(maps.Keys(want)), ",")
	if len(set) == 0 && node.Annotations[AnnotationLabels] == keys {
		return nil, false
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels":      set,
		"annotations": map[string]any{AnnotationLabels: keys},
	}})
	return patch, true
}

// labelValue is s if it is a valid label value, otherwise a hash of it.
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:16]
}
