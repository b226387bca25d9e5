// Package bmctest provides BMC fakes for tests: a Redfish service (httptest) that follows the
// DMTF schema shapes of ServiceRoot, ComputerSystemCollection and ComputerSystem with its Reset
// action, an in-memory bmc.BMC, and a harness that runs OpenIPMI's ipmi_sim in a network
// namespace the test creates.
package bmctest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// RedfishOptions shape the fake service.
type RedfishOptions struct {
	User, Password string
	// AllowedResets is ResetType@Redfish.AllowableValues (default On, ForceOff, GracefulShutdown,
	// ForceRestart, PowerCycle, Nmi).
	AllowedResets []string
	// LegacyLED exposes IndicatorLED (schemas before 2020.3) instead of LocationIndicatorActive.
	LegacyLED bool
	// RequireETag answers a PATCH without a matching If-Match with 428/412, as some services do.
	RequireETag bool
	// Manufacturer of the system (default "Contoso").
	Manufacturer string
}

// Redfish is a fake Redfish service with one ComputerSystem, /redfish/v1/Systems/1.
type Redfish struct {
	*httptest.Server
	opts RedfishOptions

	mu       sync.Mutex
	power    string // On or Off
	boot     map[string]string
	led      string // IndicatorLED: Lit, Blinking, Off
	locator  bool   // LocationIndicatorActive
	etag     int
	resets   []string
	bootedTo []string // boot source of every power on: the override target or "Default"
}

// NewRedfish starts the fake; it is closed when the test ends.
func NewRedfish(t testing.TB, opts RedfishOptions) *Redfish {
	if opts.User == "" {
		opts.User, opts.Password = "admin", "secret"
	}
	if opts.AllowedResets == nil {
		opts.AllowedResets = []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle", "Nmi"}
	}
	if opts.Manufacturer == "" {
		opts.Manufacturer = "Contoso"
	}
	r := &Redfish{opts: opts, power: "Off", led: "Off", etag: 1,
		boot: map[string]string{"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None", "BootSourceOverrideMode": "Legacy"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /redfish/v1", r.root)
	mux.HandleFunc("GET /redfish/v1/{$}", r.root)
	mux.HandleFunc("GET /redfish/v1/Systems", r.systems)
	mux.HandleFunc("GET /redfish/v1/Systems/1", r.getSystem)
	mux.HandleFunc("PATCH /redfish/v1/Systems/1", r.patchSystem)
	mux.HandleFunc("POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset", r.reset)
	r.Server = httptest.NewServer(r.auth(mux))
	t.Cleanup(r.Close)
	return r
}

// SetPower sets the power state ("On" or "Off") as if someone pressed the button.
func (r *Redfish) SetPower(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.power = s
}

// Power is the current PowerState.
func (r *Redfish) Power() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.power
}

// Resets lists the ResetTypes received, in order.
func (r *Redfish) Resets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resets)
}

// BootedTo lists the boot source of every power on: the once-override target, or "Default".
func (r *Redfish) BootedTo() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bootedTo)
}

// Boot returns the Boot object's override properties.
func (r *Redfish) Boot() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, v := range r.boot {
		out[k] = v
	}
	return out
}

// LEDOn reports whether the indicator is on (either property).
func (r *Redfish) LEDOn() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.LegacyLED {
		return r.led != "Off"
	}
	return r.locator
}

// rfErr writes a Redfish error body (DMTF Base message registry ids).
func rfErr(w http.ResponseWriter, status int, id, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": "Base.1.8.GeneralError", "message": "A general error has occurred. See ExtendedInfo for more information.",
		"@Message.ExtendedInfo": []map[string]any{{"@odata.type": "#Message.v1_1_1.Message", "MessageId": "Base.1.8." + id, "Message": msg, "Severity": "Warning"}},
	}})
}

func writeJSON(w http.ResponseWriter, h map[string]string, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	for k, x := range h {
		w.Header().Set(k, x)
	}
	_ = json.NewEncoder(w).Encode(v)
}

func (r *Redfish) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/redfish/v1" || req.URL.Path == "/redfish/v1/" {
			next.ServeHTTP(w, req) // the service root is readable without authentication
			return
		}
		u, p, ok := req.BasicAuth()
		if !ok || u != r.opts.User || p != r.opts.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="Redfish"`)
			rfErr(w, http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
			return
		}
		next.ServeHTTP(w, req)
	})
}

func (r *Redfish) root(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, nil, map[string]any{
		"@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot",
		"Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.11.0",
		"Systems": map[string]string{"@odata.id": "/redfish/v1/Systems"},
	})
}

func (r *Redfish) systems(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, nil, map[string]any{
		"@odata.id": "/redfish/v1/Systems", "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
		"Name": "Computer System Collection", "Members@odata.count": 1,
		"Members": []map[string]string{{"@odata.id": "/redfish/v1/Systems/1"}},
	})
}

func (r *Redfish) etagLocked() string { return fmt.Sprintf(`W/"%d"`, r.etag) }

func (r *Redfish) getSystem(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	boot := map[string]any{"BootSourceOverrideTarget@Redfish.AllowableValues": []string{"None", "Pxe", "Hdd", "Cd", "BiosSetup"}}
	for k, v := range r.boot {
		boot[k] = v
	}
	sys := map[string]any{
		"@odata.id": "/redfish/v1/Systems/1", "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
		"@odata.etag": r.etagLocked(), "Id": "1", "Name": "System", "SystemType": "Physical",
		"Manufacturer": r.opts.Manufacturer, "Model": "Fake 1U", "UUID": "00000000-0000-0000-0000-000000000001",
		"PowerState": r.power, "Boot": boot,
		"Status": map[string]string{"State": "Enabled", "Health": "OK"},
		"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
			"target":                            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
			"ResetType@Redfish.AllowableValues": r.opts.AllowedResets,
		}},
	}
	if r.opts.LegacyLED {
		sys["IndicatorLED"] = r.led
	} else {
		sys["LocationIndicatorActive"] = r.locator
	}
	writeJSON(w, map[string]string{"ETag": r.etagLocked()}, sys)
}

func (r *Redfish) patchSystem(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.RequireETag {
		switch m := req.Header.Get("If-Match"); {
		case m == "":
			rfErr(w, http.StatusPreconditionRequired, "PreconditionRequired", "A precondition header or annotation is required to change this resource.")
			return
		case m != r.etagLocked():
			rfErr(w, http.StatusPreconditionFailed, "PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource.")
			return
		}
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		rfErr(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	for k, raw := range body {
		switch k {
		case "Boot":
			var b map[string]string
			if err := json.Unmarshal(raw, &b); err != nil {
				rfErr(w, http.StatusBadRequest, "PropertyValueTypeError", "Boot has the wrong type.")
				return
			}
			for bk, bv := range b {
				valid := map[string][]string{
					"BootSourceOverrideEnabled": {"Disabled", "Once", "Continuous"},
					"BootSourceOverrideTarget":  {"None", "Pxe", "Hdd", "Cd", "BiosSetup"},
					"BootSourceOverrideMode":    {"Legacy", "UEFI"},
				}[bk]
				if !slices.Contains(valid, bv) {
					rfErr(w, http.StatusBadRequest, "PropertyValueNotInList", fmt.Sprintf("The value %s for the property %s is not in the list of acceptable values.", bv, bk))
					return
				}
				r.boot[bk] = bv
			}
		case "IndicatorLED":
			var v string
			if r.opts.LegacyLED && json.Unmarshal(raw, &v) == nil && slices.Contains([]string{"Lit", "Blinking", "Off"}, v) {
				r.led = v
				continue
			}
			rfErr(w, http.StatusBadRequest, "PropertyNotWritable", "The property IndicatorLED is a read only property and cannot be assigned a value.")
			return
		case "LocationIndicatorActive":
			var v bool
			if !r.opts.LegacyLED && json.Unmarshal(raw, &v) == nil {
				r.locator = v
				continue
			}
			rfErr(w, http.StatusBadRequest, "PropertyUnknown", "The property LocationIndicatorActive is not in the list of valid properties for the resource.")
			return
		default:
			rfErr(w, http.StatusBadRequest, "PropertyUnknown", "The property "+k+" is not in the list of valid properties for the resource.")
			return
		}
	}
	r.etag++
	w.WriteHeader(http.StatusNoContent)
}

// powerOnLocked records the boot source and consumes a once override.
func (r *Redfish) powerOnLocked() {
	r.power = "On"
	src := "Default"
	if r.boot["BootSourceOverrideEnabled"] != "Disabled" {
		src = r.boot["BootSourceOverrideTarget"]
	}
	if r.boot["BootSourceOverrideEnabled"] == "Once" {
		r.boot["BootSourceOverrideEnabled"] = "Disabled"
		r.etag++
	}
	r.bootedTo = append(r.bootedTo, src)
}

func (r *Redfish) reset(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var body struct{ ResetType string }
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil || body.ResetType == "" {
		rfErr(w, http.StatusBadRequest, "ActionParameterMissing", "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.")
		return
	}
	if !slices.Contains(r.opts.AllowedResets, body.ResetType) {
		rfErr(w, http.StatusBadRequest, "ActionParameterValueNotInList",
			fmt.Sprintf("The value %s for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.", body.ResetType))
		return
	}
	r.resets = append(r.resets, body.ResetType)
	switch body.ResetType {
	case "On", "ForceOn":
		if r.power == "Off" {
			r.powerOnLocked()
		}
	case "ForceOff", "GracefulShutdown":
		r.power = "Off"
	case "ForceRestart", "GracefulRestart", "PowerCycle":
		if r.power == "Off" && body.ResetType != "PowerCycle" {
			rfErr(w, http.StatusConflict, "OperationNotAllowed", "The operation was not successful because the system is powered off.")
			return
		}
		r.powerOnLocked()
	}
	w.WriteHeader(http.StatusNoContent)
}

// Address is the URL to put in bmc.Config.Address.
func (r *Redfish) Address() string { return strings.TrimSuffix(r.URL, "/") }
