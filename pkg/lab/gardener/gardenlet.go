package gardener

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	v1beta1constants "github.com/gardener/gardener/pkg/apis/core/v1beta1/constants"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	gardenerutils "github.com/gardener/gardener/pkg/utils/gardener"
	secretsutils "github.com/gardener/gardener/pkg/utils/secrets"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/pkg/mcm"
)

// Manifests are the garden cluster's objects of one shoot, as gardener's API server would hold
// them after its defaulting.
type Manifests struct {
	CloudProfile *gardencorev1beta1.CloudProfile
	Seed         *gardencorev1beta1.Seed
	Shoot        *gardencorev1beta1.Shoot
}

// LoadManifests reads cloudprofile.yaml, seed.yaml and shoot.yaml from dir into gardener's
// core/v1beta1 types, strictly (an unknown or misspelt field is an error), and applies gardener's
// API defaults.
func LoadManifests(dir string) (*Manifests, error) {
	m := &Manifests{CloudProfile: &gardencorev1beta1.CloudProfile{}, Seed: &gardencorev1beta1.Seed{}, Shoot: &gardencorev1beta1.Shoot{}}
	for name, obj := range map[string]any{"cloudprofile.yaml": m.CloudProfile, "seed.yaml": m.Seed, "shoot.yaml": m.Shoot} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
	}
	gardencorev1beta1.SetObjectDefaults_CloudProfile(m.CloudProfile)
	gardencorev1beta1.SetObjectDefaults_Seed(m.Seed)
	gardencorev1beta1.SetObjectDefaults_Shoot(m.Shoot)
	return m, nil
}

// Gardenlet builds what gardenlet creates in the seed for the shoot of Manifests.
type Gardenlet struct {
	*Manifests
	// UID is the shoot's status.uid, which gardener's API server assigns; metalforge's cluster ID.
	UID string
	// SSHPublicKey is the shoot's SSH key (gardener generates the pair and keeps it in the garden).
	SSHPublicKey string
}

// CloudProviderSecretName is the name of the credentials secret in the shoot namespace.
const CloudProviderSecretName = v1beta1constants.SecretNameCloudProvider

// Namespace is the shoot's technical ID, its namespace in the seed: shoot--<project>--<name>,
// the project being the shoot's namespace without "garden-".
func (g *Gardenlet) Namespace() string {
	project := strings.TrimPrefix(g.Shoot.Namespace, "garden-")
	return fmt.Sprintf("shoot--%s--%s", project, g.Shoot.Name)
}

// NamespaceObject is the shoot namespace with the labels gardenlet sets.
func (g *Gardenlet) NamespaceObject() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: g.Namespace(), Labels: map[string]string{
		v1beta1constants.GardenRole:                               v1beta1constants.GardenRoleShoot,
		v1beta1constants.LabelShootProvider:                       g.Shoot.Spec.Provider.Type,
		v1beta1constants.LabelSeedProvider:                        g.Seed.Spec.Provider.Type,
		v1beta1constants.LabelNetworkingProvider:                  networkingType(g.Shoot),
		v1beta1constants.LabelBackupProvider:                      g.Seed.Spec.Provider.Type,
		v1beta1constants.ShootUID:                                 g.UID,
		"extensions.gardener.cloud/" + g.Shoot.Spec.Provider.Type: "true",
	}}}
}

func networkingType(s *gardencorev1beta1.Shoot) string {
	if s.Spec.Networking != nil && s.Spec.Networking.Type != nil {
		return *s.Spec.Networking.Type
	}
	return ""
}

// Cluster is the extensions Cluster named after the shoot namespace, with the shoot (status uid
// and technical ID set), the cloud profile and the seed embedded, annotated with the name of the
// generic token kubeconfig secret (GenericTokenKubeconfig).
func (g *Gardenlet) Cluster() (*extensionsv1alpha1.Cluster, error) {
	shoot := g.Shoot.DeepCopy()
	shoot.TypeMeta = metav1.TypeMeta{APIVersion: gardencorev1beta1.SchemeGroupVersion.String(), Kind: "Shoot"}
	shoot.Status.UID = types.UID(g.UID)
	shoot.Status.TechnicalID = g.Namespace()
	shoot.Status.SeedName = &g.Seed.Name
	shoot.Spec.SeedName = &g.Seed.Name
	profile := g.CloudProfile.DeepCopy()
	profile.TypeMeta = metav1.TypeMeta{APIVersion: gardencorev1beta1.SchemeGroupVersion.String(), Kind: "CloudProfile"}
	seed := g.Seed.DeepCopy()
	seed.TypeMeta = metav1.TypeMeta{APIVersion: gardencorev1beta1.SchemeGroupVersion.String(), Kind: "Seed"}
	var raws [3][]byte
	for i, o := range []any{shoot, profile, seed} {
		raw, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode cluster: %w", err)
		}
		raws[i] = raw
	}
	return &extensionsv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: g.Namespace(), Annotations: map[string]string{
			v1beta1constants.AnnotationKeyGenericTokenKubeconfigSecretName: g.GenericTokenKubeconfigSecretName()}},
		Spec: extensionsv1alpha1.ClusterSpec{
			Shoot:        runtime.RawExtension{Raw: raws[0]},
			CloudProfile: runtime.RawExtension{Raw: raws[1]},
			Seed:         &runtime.RawExtension{Raw: raws[2]},
		},
	}, nil
}

// CloudProviderSecret is the shoot's credentials in its namespace as gardenlet copies them from
// the credentials binding: the metal-api token and, when url is not empty, the metal-api URL
// (else the actuators take the endpoint of the partition's control plane in the cloud profile).
func (g *Gardenlet) CloudProviderSecret(url, token string) *corev1.Secret {
	data := map[string][]byte{mcm.SecretMetalAPIToken: []byte(token)}
	if url != "" {
		data[mcm.SecretMetalAPIURL] = []byte(url)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CloudProviderSecretName, Namespace: g.Namespace(),
			Labels: map[string]string{v1beta1constants.GardenerPurpose: v1beta1constants.SecretNameCloudProvider}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}

// reconcile is gardenlet's annotation asking an extension to reconcile.
func reconcile() map[string]string {
	return map[string]string{v1beta1constants.GardenerOperation: v1beta1constants.GardenerOperationReconcile}
}

// Infrastructure is the shoot's Infrastructure (named after the shoot, as gardenlet does) with
// the shoot's infrastructureConfig.
func (g *Gardenlet) Infrastructure() *extensionsv1alpha1.Infrastructure {
	return &extensionsv1alpha1.Infrastructure{
		ObjectMeta: metav1.ObjectMeta{Name: g.Shoot.Name, Namespace: g.Namespace(), Annotations: reconcile()},
		Spec: extensionsv1alpha1.InfrastructureSpec{
			DefaultSpec:  extensionsv1alpha1.DefaultSpec{Type: g.Shoot.Spec.Provider.Type, ProviderConfig: g.Shoot.Spec.Provider.InfrastructureConfig.DeepCopy()},
			Region:       g.Shoot.Spec.Region,
			SecretRef:    corev1.SecretReference{Name: CloudProviderSecretName, Namespace: g.Namespace()},
			SSHPublicKey: []byte(g.SSHPublicKey),
		},
	}
}

// ControlPlane is the shoot's ControlPlane (named after the shoot, purpose normal) as gardenlet
// deploys it once the Infrastructure is ready: the shoot's controlPlaneConfig, its region, the
// cloudprovider secret and the infrastructure's providerStatus.
func (g *Gardenlet) ControlPlane(infraStatus *runtime.RawExtension) *extensionsv1alpha1.ControlPlane {
	return &extensionsv1alpha1.ControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: g.Shoot.Name, Namespace: g.Namespace(), Annotations: reconcile()},
		Spec: extensionsv1alpha1.ControlPlaneSpec{
			DefaultSpec:                  extensionsv1alpha1.DefaultSpec{Type: g.Shoot.Spec.Provider.Type, ProviderConfig: g.Shoot.Spec.Provider.ControlPlaneConfig.DeepCopy()},
			Region:                       g.Shoot.Spec.Region,
			SecretRef:                    corev1.SecretReference{Name: CloudProviderSecretName, Namespace: g.Namespace()},
			InfrastructureProviderStatus: infraStatus.DeepCopy(),
		},
	}
}

// kubeAPIServerURL is the shoot's API server as control plane pods in the shoot namespace reach it.
const kubeAPIServerURL = "https://" + v1beta1constants.DeploymentNameKubeAPIServer

// GenericTokenKubeconfigSecretName is the name of the generic token kubeconfig secret; like the
// names gardenlet's secrets manager gives, it carries a hash of the secret's configuration.
func (g *Gardenlet) GenericTokenKubeconfigSecretName() string {
	sum := sha256.Sum256([]byte(g.Namespace() + "\n" + kubeAPIServerURL))
	return v1beta1constants.SecretNameGenericTokenKubeconfig + "-" + hex.EncodeToString(sum[:])[:8]
}

// GenericTokenKubeconfig is the secret gardenlet generates in the shoot namespace for control
// plane components that talk to the shoot: a kubeconfig for the shoot's kube-apiserver (trusting
// a freshly generated cluster CA) whose token is read from the file the pods get from their shoot
// access secret. Its name is GenericTokenKubeconfigSecretName, which the Cluster announces.
func (g *Gardenlet) GenericTokenKubeconfig() (*corev1.Secret, error) {
	ca, err := (&secretsutils.CertificateSecretConfig{Name: v1beta1constants.SecretNameCACluster, CommonName: "kubernetes",
		CertType: secretsutils.CACert}).GenerateCertificate()
	if err != nil {
		return nil, fmt.Errorf("generate cluster ca: %w", err)
	}
	kubeconfig, err := (&secretsutils.KubeconfigSecretConfig{
		Name:        v1beta1constants.SecretNameGenericTokenKubeconfig,
		ContextName: g.Namespace(),
		Cluster:     clientcmdv1.Cluster{Server: kubeAPIServerURL, CertificateAuthorityData: ca.CertificatePEM},
		AuthInfo:    clientcmdv1.AuthInfo{TokenFile: gardenerutils.PathShootToken},
	}).Generate()
	if err != nil {
		return nil, fmt.Errorf("generate generic token kubeconfig: %w", err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: g.GenericTokenKubeconfigSecretName(), Namespace: g.Namespace(),
			Labels: map[string]string{"managed-by": "secrets-manager", "manager-identity": "gardenlet",
				"name": v1beta1constants.SecretNameGenericTokenKubeconfig}},
		Type: corev1.SecretTypeOpaque,
		Data: kubeconfig.SecretData(),
	}, nil
}

// UserData is the stand-in for a pool's operating system config (gardener renders it with the OS
// extension and gardener-node-agent): a cloud-config naming the pool and the machine.
func UserData(pool string) []byte {
	return []byte("#cloud-config\n# worker pool " + pool + "\nhostname: <<MACHINE_NAME>>\n")
}

// Worker is the shoot's Worker (named after the shoot) with one pool per shoot worker and the
// infrastructure's providerStatus, plus the user-data secret of each pool (key cloud_config, the
// name carrying a hash of the content, as gardenlet's operating system config secrets do).
func (g *Gardenlet) Worker(infraStatus *runtime.RawExtension) (*extensionsv1alpha1.Worker, []*corev1.Secret) {
	ns := g.Namespace()
	w := &extensionsv1alpha1.Worker{
		ObjectMeta: metav1.ObjectMeta{Name: g.Shoot.Name, Namespace: ns, Annotations: reconcile()},
		Spec: extensionsv1alpha1.WorkerSpec{
			DefaultSpec:                  extensionsv1alpha1.DefaultSpec{Type: g.Shoot.Spec.Provider.Type},
			Region:                       g.Shoot.Spec.Region,
			SecretRef:                    corev1.SecretReference{Name: CloudProviderSecretName, Namespace: ns},
			InfrastructureProviderStatus: infraStatus.DeepCopy(),
			SSHPublicKey:                 []byte(g.SSHPublicKey),
		},
	}
	var secrets []*corev1.Secret
	for _, p := range g.Shoot.Spec.Provider.Workers {
		ud := UserData(p.Name)
		sum := sha256.Sum256(ud)
		name := "worker-" + p.Name + "-" + hex.EncodeToString(sum[:])[:5]
		secrets = append(secrets, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
				v1beta1constants.GardenRole: v1beta1constants.GardenRoleOperatingSystemConfig, "worker.gardener.cloud/pool": p.Name}},
			Data: map[string][]byte{extensionsv1alpha1.OperatingSystemConfigSecretDataKey: ud},
		})
		pool := extensionsv1alpha1.WorkerPool{
			Name:           p.Name,
			MachineType:    p.Machine.Type,
			Minimum:        p.Minimum,
			Maximum:        p.Maximum,
			MaxSurge:       intOr(p.MaxSurge, 1),
			MaxUnavailable: intOr(p.MaxUnavailable, 0),
			Annotations:    p.Annotations,
			Labels:         p.Labels,
			Taints:         p.Taints,
			ProviderConfig: p.ProviderConfig.DeepCopy(),
			UserDataSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name},
				Key: extensionsv1alpha1.OperatingSystemConfigSecretDataKey},
			NodeAgentSecretName: new("gardener-node-agent-" + p.Name + "-" + hex.EncodeToString(sum[:])[5:10]),
			Zones:               p.Zones,
			Architecture:        p.Machine.Architecture,
			Priority:            p.Priority,
		}
		if p.Machine.Image != nil {
			pool.MachineImage = extensionsv1alpha1.MachineImage{Name: p.Machine.Image.Name}
			if p.Machine.Image.Version != nil {
				pool.MachineImage.Version = *p.Machine.Image.Version
			}
		}
		if g.Shoot.Spec.Kubernetes.Version != "" {
			pool.KubernetesVersion = new(g.Shoot.Spec.Kubernetes.Version)
		}
		w.Spec.Pools = append(w.Spec.Pools, pool)
	}
	return w, secrets
}

func intOr(v *intstr.IntOrString, def int32) intstr.IntOrString {
	if v != nil {
		return *v
	}
	return intstr.FromInt32(def)
}
