package controlplane

import (
	extensionssecretsmanager "github.com/gardener/gardener/extensions/pkg/util/secret/manager"
	gardenerutils "github.com/gardener/gardener/pkg/utils/gardener"
	kubernetesutils "github.com/gardener/gardener/pkg/utils/kubernetes"
	secretsutils "github.com/gardener/gardener/pkg/utils/secrets"
	secretsmanager "github.com/gardener/gardener/pkg/utils/secrets/manager"
)

const (
	// CAName is the CA of the control plane's server certificates (persisted, rotated with the
	// shoot's CAs).
	CAName = "ca-provider-metal-controlplane"
	// CloudControllerManagerName names metal-ccm's Deployment, Service, ServiceAccount (in the
	// shoot) and certificates.
	CloudControllerManagerName = "cloud-controller-manager"
	// ServerSecretName is metal-ccm's server certificate (its secure port: /healthz, /metrics).
	ServerSecretName = CloudControllerManagerName + "-server"
)

// AccessSecretName is the shoot access secret of metal-ccm; gardener-resource-manager keeps a
// token for the ServiceAccount kube-system/cloud-controller-manager in it.
const AccessSecretName = gardenerutils.SecretNamePrefixShootAccess + CloudControllerManagerName

func secretConfigs(namespace string) []extensionssecretsmanager.SecretConfigWithOptions {
	return []extensionssecretsmanager.SecretConfigWithOptions{
		{
			Config: &secretsutils.CertificateSecretConfig{
				Name: CAName, CommonName: CAName, CertType: secretsutils.CACert,
			},
			Options: []secretsmanager.GenerateOption{secretsmanager.Persist()},
		},
		{
			Config: &secretsutils.CertificateSecretConfig{
				Name:                        ServerSecretName,
				CommonName:                  CloudControllerManagerName,
				DNSNames:                    kubernetesutils.DNSNamesForService(CloudControllerManagerName, namespace),
				CertType:                    secretsutils.ServerCert,
				SkipPublishingCACertificate: true,
			},
			Options: []secretsmanager.GenerateOption{secretsmanager.SignedByCA(CAName)},
		},
	}
}

func shootAccessSecrets(namespace string) []*gardenerutils.AccessSecret {
	return []*gardenerutils.AccessSecret{gardenerutils.NewShootAccessSecret(CloudControllerManagerName, namespace)}
}
