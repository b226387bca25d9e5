package rest

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/metalforge/metalforge/pkg/api"
)

// checkAnswer fails on server errors and on error bodies that are not {code, message}.
func checkAnswer(t *testing.T, path string, code int, raw []byte) {
	if code >= 500 {
		t.Fatalf("%s: status %d: %s", path, code, raw)
	}
	if code >= 400 {
		var e api.Error
		if err := json.Unmarshal(raw, &e); err != nil || e.Code != code || e.Message == "" {
			t.Fatalf("%s: error body %q is not {code, message}", path, raw)
		}
	}
}

// FuzzDecodeAllocate posts arbitrary bodies to the allocation routes of a real server: never a 5xx,
// always a well-formed answer.
func FuzzDecodeAllocate(f *testing.F) {
	e := newEnv(f)
	for _, seed := range []string{
		`{"projectID":"x","partitionID":"p1","sizeID":"c1-small","imageID":"debian-12","autoNetwork":true}`,
		`{"machineID":"m-free1","imageID":"debian-12","networks":[{"networkID":"internet","ips":["185.1.2.7"]}]}`,
		`{"role":"firewall","hostname":"-a-","userData":"` + "\x00" + `"}`,
		`{"networks":[{"networkID":""}]}`, `[]`, `null`, `{"sizeID":1}`, `{"projectID":"` + e.projA + `","sizeID":"c1-small","partitionID":"p1","imageID":"debian-12","networks":[{"networkID":"tenant-super"}]}`,
	} {
		f.Add(seed)
	}
	paths := []string{"/v1/machine/allocate", "/v1/network/allocate", "/v1/ip/allocate", "/v1/machine/find"}
	f.Fuzz(func(t *testing.T, body string) {
		e := *e
		e.t = t
		for _, p := range paths {
			code, raw := e.raw(e.tokens["ownerA"], http.MethodPost, p, body)
			checkAnswer(t, p, code, raw)
		}
	})
}

// FuzzDecodeEntities posts arbitrary bodies to the create routes of every admin entity.
func FuzzDecodeEntities(f *testing.F) {
	e := newEnv(f)
	for _, seed := range []string{
		`{"id":"p9","boot":{"kernelURL":"http://x/k"}}`,
		`{"id":"s9","constraints":[{"type":"cores","min":100,"max":200}]}`,
		`{"id":"n9","type":"external","prefixes":["203.0.113.0/24","2001:db8::/32"]}`,
		`{"id":"n8","type":"private","prefixes":["10.128.4.0/22"],"partitionID":"p1","parentNetworkID":"tenant-super"}`,
		`{"id":"i9","url":"http://x","sha256":"` + "00" + `","os":"a","osVersion":"1","features":["machine"]}`,
		`{"id":"l9","disks":[{"device":"/dev/nvme0n1","partitions":[{"number":1,"size":0}]}],"filesystems":[{"device":"/dev/nvme0n1p1","format":"ext4","path":"/"}]}`,
		`{"id":"x","constraints":[{"type":"gpu","identifier":"[","min":1,"max":1}]}`,
	} {
		f.Add(seed)
	}
	paths := []string{"/v1/partition", "/v1/size", "/v1/network", "/v1/image", "/v1/filesystemlayout", "/v1/sizereservation", "/v1/project", "/v1/token", "/v1/switch/register"}
	f.Fuzz(func(t *testing.T, body string) {
		e := *e
		e.t = t
		for _, p := range paths {
			code, raw := e.raw(e.tokens["admin"], http.MethodPost, p, body)
			checkAnswer(t, p, code, raw)
		}
	})
}
