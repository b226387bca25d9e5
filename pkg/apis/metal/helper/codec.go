// Package helper decodes provider configs of the metal provider type strictly into the
// internal types (package metal), encodes status back as v1alpha1, and looks things up in a
// CloudProfileConfig.
package helper

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/install"
	"github.com/metalforge/metalforge/pkg/apis/metal/v1alpha1"
)

// Codec decodes and encodes provider configs. It is safe for concurrent use; build one at
// start-up and keep it.
type Codec struct {
	scheme  *runtime.Scheme
	decoder runtime.Decoder
	encoder runtime.Encoder
}

// NewCodec returns a codec over a scheme holding both API versions. Decoding is strict: unknown
// and duplicate fields are errors.
func NewCodec() *Codec {
	s := runtime.NewScheme()
	install.Install(s)
	f := serializer.NewCodecFactory(s, serializer.EnableStrict)
	return &Codec{
		scheme:  s,
		decoder: f.UniversalDecoder(),
		encoder: f.LegacyCodec(v1alpha1.SchemeGroupVersion),
	}
}

// Decode is NewCodec().Decode, for one-off use.
func Decode(data []byte, into runtime.Object) error {
	return NewCodec().Decode(data, into)
}

// Decode decodes a provider config (JSON or YAML, any served version) into into, which must be
// a pointer to an internal type such as *metal.InfrastructureConfig. The object is defaulted and
// converted on the way. An unknown field fails with an error naming it, e.g.
// `unknown field "firewall.sise"`; a document of another kind fails with both kinds named.
func (c *Codec) Decode(data []byte, into runtime.Object) error {
	want, err := c.internalKind(into)
	if err != nil {
		return err
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return fmt.Errorf("decode %s: %w", want.Kind, err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return fmt.Errorf("decode %s: apiVersion and kind are required (want %s, kind %s)", want.Kind, v1alpha1.SchemeGroupVersion, want.Kind)
	}
	got := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	if got.Group != metal.GroupName || got.Kind != want.Kind {
		return fmt.Errorf("decode %s: got %s, %s", want.Kind, tm.APIVersion, tm.Kind)
	}
	if !c.scheme.Recognizes(got) {
		return fmt.Errorf("decode %s: version %s is not served (served: %s)", want.Kind, tm.APIVersion, v1alpha1.SchemeGroupVersion)
	}
	if _, _, err := c.decoder.Decode(data, nil, into); err != nil {
		return fmt.Errorf("decode %s: %w", want.Kind, err)
	}
	return nil
}

// EncodeJSON converts an internal object to v1alpha1 and encodes it as JSON with apiVersion and
// kind set, as it goes into a providerStatus or providerConfig field.
func (c *Codec) EncodeJSON(obj runtime.Object) ([]byte, error) {
	b, err := runtime.Encode(c.encoder, obj)
	if err != nil {
		return nil, fmt.Errorf("encode provider config: %w", err)
	}
	return b, nil
}

func (c *Codec) internalKind(into runtime.Object) (schema.GroupVersionKind, error) {
	gvks, _, err := c.scheme.ObjectKinds(into)
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("decode provider config: %w", err)
	}
	for _, gvk := range gvks {
		if gvk.GroupVersion() == metal.SchemeGroupVersion {
			return gvk, nil
		}
	}
	return schema.GroupVersionKind{}, fmt.Errorf("decode provider config: %T is not an internal metal type", into)
}
