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
	"github.com/metalforge/metalforge/pkg/providerid"
)

// AnnotationLabels on a Node lists the label keys housekeeping set from its machine, so that it can
// remove them when the machine loses the tag.
const AnnotationLabels = "machine.metalforge.io/labels"

// Events on a Node about its machine's tags.
const (
	// ReasonTagsSet: housekeeping replaced the machine's tags (cluster tag, node-owned tags).
	ReasonTagsSet = "MachineTagsSet"
	// ReasonOtherCluster: the machine carries another cluster's tag; housekeeping leaves its tags alone.
	ReasonOtherCluster = "MachineOfOtherCluster"
)

// maxTagLen is the longest tag metal-api takes.
const maxTagLen = 253

// Housekeeping keeps Nodes and their machines in step. Every key has one owner, so that the two
// directions never undo each other:
//
//   - the machine owns ASN, rack, size and partition, and every key=value tag whose key is a valid
//     label key outside Config.NodeTagPrefix: they become node labels (edits on the Node are reverted);
//   - the Node owns the labels under Config.NodeTagPrefix: the machine's tags under the prefix are
//     exactly those labels as key=value (a tag under the prefix without its label is removed);
//   - every machine backing a Node carries the cluster tag cluster.metalforge.io/id=<cluster>,
//     unless it carries another cluster's tag: then housekeeping warns and does not touch its tags.
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
	if n, ok := obj.(*corev1.Node); ok && providerid.Is(n.Spec.ProviderID) {
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
	if m, err = h.syncTags(ctx, node, m); err != nil {
		return err
	}
	patch, ok := labelPatch(node, desiredLabels(m, h.c.cfg.NodeTagPrefix), h.c.cfg.NodeTagPrefix)
	if !ok {
		return nil
	}
	if _, err := h.kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: managedBy}); err != nil {
		return fmt.Errorf("label node %s: %w", name, err)
	}
	h.log.V(1).Info("labelled node", "node", name, "machine", m.ID)
	return nil
}

// syncTags gives the machine the cluster tag and the node's tags, and returns it as it is now.
func (h *Housekeeping) syncTags(ctx context.Context, node *corev1.Node, m *wire.Machine) (*wire.Machine, error) {
	cluster := h.c.metal.clusterTag()
	if other := otherCluster(m.Tags, cluster); other != "" {
		h.event(node, corev1.EventTypeWarning, ReasonOtherCluster,
			"Machine %s carries %s, not %s: its tags are left alone", m.ID, other, cluster)
		return m, nil
	}
	want, skipped := desiredTags(m.Tags, node.Labels, cluster, h.c.cfg.NodeTagPrefix)
	for _, k := range skipped {
		h.log.Info("node label too long for a machine tag", "node", node.Name, "label", k)
	}
	if slices.Equal(want, normalTags(m.Tags)) {
		return m, nil
	}
	// metal-api replaces the tags without a version check: the read above is the base, taken just
	// before; a change another writer makes in between is overwritten (metal-api has no If-Match).
	got, err := h.c.metal.setMachineTags(ctx, m.ID, want)
	if err != nil {
		return nil, err
	}
	h.log.V(1).Info("set machine tags", "node", node.Name, "machine", m.ID, "tags", want)
	h.event(node, corev1.EventTypeNormal, ReasonTagsSet, "Machine %s tags set to %s", m.ID, strings.Join(want, ","))
	return got, nil
}

func (h *Housekeeping) event(node *corev1.Node, typ, reason, msg string, args ...any) {
	if h.recorder != nil {
		h.recorder.Eventf(node, typ, reason, msg, args...)
	}
}

// otherCluster returns a cluster tag of the tags that is not ours, or "".
func otherCluster(tags []string, ours string) string {
	for _, t := range tags {
		if strings.HasPrefix(t, TagCluster) && t != ours {
			return t
		}
	}
	return ""
}

// normalTags are tags sorted and without duplicates, as metal-api stores them.
func normalTags(tags []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(tags)))
}

// desiredTags are the machine's tags outside the prefix, the cluster tag and the node's labels under
// the prefix as key=value; skipped lists the labels too long for a tag.
func desiredTags(tags []string, labels map[string]string, cluster, prefix string) (want, skipped []string) {
	for _, t := range tags {
		if !strings.HasPrefix(t, prefix) {
			want = append(want, t)
		}
	}
	want = append(want, cluster)
	for k, v := range labels {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if t := k + "=" + v; len(t) <= maxTagLen {
			want = append(want, t)
		} else {
			skipped = append(skipped, k)
		}
	}
	slices.Sort(skipped)
	return normalTags(want), skipped
}

// desiredLabels: the machine labels plus its key=value tags that are valid labels, except those
// under the prefix (the Node owns them).
func desiredLabels(m *wire.Machine, prefix string) map[string]string {
	want := map[string]string{}
	for _, t := range m.Tags {
		k, v, ok := strings.Cut(t, "=")
		if ok && !strings.HasPrefix(k, prefix) && len(validation.IsQualifiedName(k)) == 0 && len(validation.IsValidLabelValue(v)) == 0 {
			want[k] = v
		}
	}
	maps.Copy(want, machineLabels(m))
	return want
}

// labelPatch is the merge patch that makes the node carry want and drops the labels set before
// (listed in AnnotationLabels) that want no longer has, except those under the prefix (after a
// change of the prefix they belong to the Node); ok is false when nothing changes.
func labelPatch(node *corev1.Node, want map[string]string, prefix string) ([]byte, bool) {
	set := map[string]any{}
	for k, v := range want {
		if cur, ok := node.Labels[k]; !ok || cur != v {
			set[k] = v
		}
	}
	for _, k := range strings.Split(node.Annotations[AnnotationLabels], ",") {
		if _, keep := want[k]; k != "" && !keep && !strings.HasPrefix(k, prefix) {
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
