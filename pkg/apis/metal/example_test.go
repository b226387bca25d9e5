package metal_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/apis/metal/validation"
)

const exampleDir = "../../../example/gardener"

// embedded is a provider config found inside an example manifest.
type embedded struct {
	file string
	path *field.Path // where it sits in its manifest
	kind string
	raw  []byte // JSON
}

// manifest is one YAML document of an example file, kept generic: the Gardener types are not
// imported here.
type manifest struct {
	file string
	obj  map[string]any
}

func loadExamples(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(exampleDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no examples in %s", exampleDir)
	}
	var out []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(b), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if obj == nil {
				continue
			}
			out = append(out, manifest{file: filepath.Base(f), obj: obj})
		}
	}
	return out
}

// findConfigs walks v and collects every providerConfig, infrastructureConfig and
// controlPlaneConfig, wherever it is nested.
func findConfigs(t *testing.T, file string, p *field.Path, v any, out *[]embedded) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			child := v[k]
			switch k {
			case "providerConfig", "infrastructureConfig", "controlPlaneConfig":
				m, ok := child.(map[string]any)
				if !ok {
					t.Errorf("%s: %s is not an object", file, p.Child(k))
					continue
				}
				raw, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				kind, _ := m["kind"].(string)
				*out = append(*out, embedded{file: file, path: p.Child(k), kind: kind, raw: raw})
			default:
				findConfigs(t, file, p.Child(k), child, out)
			}
		}
	case []any:
		for i, e := range v {
			findConfigs(t, file, p.Index(i), e, out)
		}
	}
}

// get digs a value out of a generic object by keys.
func get(obj map[string]any, keys ...string) any {
	var v any = obj
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func list(v any) []map[string]any {
	items, _ := v.([]any)
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// TestExamples decodes and validates every provider config in example/gardener, on its own
// and against the CloudProfileConfig of the CloudProfile the Shoot names, and checks that the
// Shoot, Seed and CloudProfile fit together (region, zones, machine types, images).
func TestExamples(t *testing.T) {
	codec := helper.NewCodec()
	manifests := loadExamples(t)

	cloudProfiles := map[string]*metal.CloudProfileConfig{}
	type profileInfo struct {
		regions      map[string][]string
		machineTypes map[string]bool
		images       map[string]bool
	}
	profiles := map[string]profileInfo{}
	var configs []embedded
	for _, m := range manifests {
		findConfigs(t, m.file, nil, m.obj, &configs)
		if m.obj["kind"] != "CloudProfile" {
			continue
		}
		name, _ := get(m.obj, "metadata", "name").(string)
		info := profileInfo{regions: map[string][]string{}, machineTypes: map[string]bool{}, images: map[string]bool{}}
		for _, r := range list(get(m.obj, "spec", "regions")) {
			rn, _ := r["name"].(string)
			info.regions[rn] = nil
			for _, z := range list(r["zones"]) {
				zn, _ := z["name"].(string)
				info.regions[rn] = append(info.regions[rn], zn)
			}
		}
		for _, mt := range list(get(m.obj, "spec", "machineTypes")) {
			mn, _ := mt["name"].(string)
			info.machineTypes[mn] = true
		}
		for _, img := range list(get(m.obj, "spec", "machineImages")) {
			in, _ := img["name"].(string)
			for _, v := range list(img["versions"]) {
				info.images[fmt.Sprintf("%s/%v", in, v["version"])] = true
			}
		}
		profiles[name] = info
	}

	kinds := map[string]int{}
	for _, c := range configs {
		kinds[c.kind]++
	}
	for _, kind := range []string{"CloudProfileConfig", "InfrastructureConfig", "ControlPlaneConfig", "WorkerConfig"} {
		if kinds[kind] == 0 {
			t.Errorf("the examples hold no %s", kind)
		}
	}

	// Cloud profiles first: the shoot configs are checked against them.
	for _, m := range manifests {
		if m.obj["kind"] != "CloudProfile" {
			continue
		}
		name, _ := get(m.obj, "metadata", "name").(string)
		raw, err := json.Marshal(get(m.obj, "spec", "providerConfig"))
		if err != nil {
			t.Fatal(err)
		}
		cpc := &metal.CloudProfileConfig{}
		if err := codec.Decode(raw, cpc); err != nil {
			t.Errorf("%s: spec.providerConfig: %v", m.file, err)
			continue
		}
		errs := validation.ValidateCloudProfileConfig(cpc, field.NewPath("spec", "providerConfig"))
		errs = append(errs, validation.ValidateCloudProfileConfigZones(cpc, profiles[name].regions, field.NewPath("spec", "regions"))...)
		if len(errs) > 0 {
			t.Errorf("%s: %v", m.file, errs.ToAggregate())
		}
		cloudProfiles[name] = cpc
	}

	for _, m := range manifests {
		switch m.obj["kind"] {
		case "Shoot":
			checkShoot(t, codec, m, cloudProfiles, func(profile, region, zone, machineType, image string) []string {
				info, ok := profiles[profile]
				if !ok {
					return []string{"cloud profile " + profile + " not among the examples"}
				}
				var probs []string
				zones, ok := info.regions[region]
				if !ok {
					probs = append(probs, "region "+region+" not in the cloud profile")
				}
				if zone != "" && !contains(zones, zone) {
					probs = append(probs, "zone "+zone+" not in region "+region)
				}
				if machineType != "" && !info.machineTypes[machineType] {
					probs = append(probs, "machine type "+machineType+" not in the cloud profile")
				}
				if image != "" && !info.images[image] {
					probs = append(probs, "machine image "+image+" not in the cloud profile")
				}
				return probs
			})
		case "Seed":
			if get(m.obj, "spec", "provider", "type") != "metal" {
				t.Errorf("%s: spec.provider.type is not metal", m.file)
			}
			region, _ := get(m.obj, "spec", "provider", "region").(string)
			found := false
			for _, info := range profiles {
				if _, ok := info.regions[region]; ok {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: seed region %q is in no example cloud profile", m.file, region)
			}
		}
	}

	// Every embedded config decodes and validates on its own, whatever manifest holds it.
	for _, c := range configs {
		t.Run(c.file+"/"+c.path.String(), func(t *testing.T) {
			obj, validate := target(c.kind)
			if obj == nil {
				t.Fatalf("unexpected kind %q", c.kind)
			}
			if err := codec.Decode(c.raw, obj); err != nil {
				t.Fatal(err)
			}
			if errs := validate(obj, c.path); len(errs) > 0 {
				t.Error(errs.ToAggregate())
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// target returns an empty internal object for kind and its stand-alone validation.
func target(kind string) (runtime.Object, func(runtime.Object, *field.Path) field.ErrorList) {
	switch kind {
	case "InfrastructureConfig":
		return &metal.InfrastructureConfig{}, func(o runtime.Object, p *field.Path) field.ErrorList {
			return validation.ValidateInfrastructureConfig(o.(*metal.InfrastructureConfig), p)
		}
	case "ControlPlaneConfig":
		return &metal.ControlPlaneConfig{}, func(o runtime.Object, p *field.Path) field.ErrorList {
			return validation.ValidateControlPlaneConfig(o.(*metal.ControlPlaneConfig), p)
		}
	case "WorkerConfig":
		return &metal.WorkerConfig{}, func(o runtime.Object, p *field.Path) field.ErrorList {
			return validation.ValidateWorkerConfig(o.(*metal.WorkerConfig), p)
		}
	case "CloudProfileConfig":
		return &metal.CloudProfileConfig{}, func(o runtime.Object, p *field.Path) field.ErrorList {
			return validation.ValidateCloudProfileConfig(o.(*metal.CloudProfileConfig), p)
		}
	}
	return nil, nil
}

func checkShoot(t *testing.T, codec *helper.Codec, m manifest, cloudProfiles map[string]*metal.CloudProfileConfig,
	fits func(profile, region, zone, machineType, image string) []string) {
	t.Helper()
	if get(m.obj, "spec", "provider", "type") != "metal" {
		t.Errorf("%s: spec.provider.type is not metal", m.file)
	}
	profile, _ := get(m.obj, "spec", "cloudProfile", "name").(string)
	region, _ := get(m.obj, "spec", "region").(string)
	cpc := cloudProfiles[profile]
	if cpc == nil {
		t.Errorf("%s: cloud profile %q not among the examples", m.file, profile)
		return
	}
	for _, p := range fits(profile, region, "", "", "") {
		t.Errorf("%s: %s", m.file, p)
	}

	provider := field.NewPath("spec", "provider")
	infraRaw, err := json.Marshal(get(m.obj, "spec", "provider", "infrastructureConfig"))
	if err != nil {
		t.Fatal(err)
	}
	infra := &metal.InfrastructureConfig{}
	if err := codec.Decode(infraRaw, infra); err != nil {
		t.Errorf("%s: %v", m.file, err)
		return
	}
	errs := validation.ValidateInfrastructureConfigAgainstCloudProfile(infra, cpc, provider.Child("infrastructureConfig"))

	cpRaw, err := json.Marshal(get(m.obj, "spec", "provider", "controlPlaneConfig"))
	if err != nil {
		t.Fatal(err)
	}
	cp := &metal.ControlPlaneConfig{}
	if err := codec.Decode(cpRaw, cp); err != nil {
		t.Errorf("%s: %v", m.file, err)
		return
	}
	errs = append(errs, validation.ValidateControlPlaneConfigAgainstCloudProfile(cp, infra.PartitionID, cpc, provider.Child("controlPlaneConfig"))...)
	if len(errs) > 0 {
		t.Errorf("%s: %v", m.file, errs.ToAggregate())
	}

	for i, w := range list(get(m.obj, "spec", "provider", "workers")) {
		machineType, _ := get(w, "machine", "type").(string)
		image := fmt.Sprintf("%v/%v", get(w, "machine", "image", "name"), get(w, "machine", "image", "version"))
		for _, p := range fits(profile, region, "", machineType, image) {
			t.Errorf("%s: workers[%d]: %s", m.file, i, p)
		}
		zones, _ := w["zones"].([]any)
		for _, z := range zones {
			zone, _ := z.(string)
			if zone != infra.PartitionID {
				t.Errorf("%s: workers[%d]: zone %q is not the cluster's partition %q", m.file, i, zone, infra.PartitionID)
			}
			for _, p := range fits(profile, region, zone, "", "") {
				t.Errorf("%s: workers[%d]: %s", m.file, i, p)
			}
		}
	}
}
