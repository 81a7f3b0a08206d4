package hcloudsim_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

func TestBadInputGetsAPIErrors(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithLocalServer("me"))
	srvPath := "/v1/servers/" + itoa(sim.LocalServerID())
	long := strings.Repeat("n", 64)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no token", "GET", "/v1/servers", "", "", 401, "unauthorized"},
		{"wrong token", "GET", "/v1/servers", "nope", "", 401, "unauthorized"},
		{"malformed JSON", "POST", "/v1/volumes", "T", `{"name": "x",`, 400, "json_error"},
		{"JSON array", "POST", "/v1/volumes", "T", `[1,2]`, 422, "invalid_input"},
		{"size of wrong type", "POST", "/v1/volumes", "T", `{"name":"x","size":"ten","location":"fsn1"}`, 422, "invalid_input"},
		{"size fractional", "POST", "/v1/volumes", "T", `{"name":"x","size":10.5,"location":"fsn1"}`, 422, "invalid_input"},
		{"negative size", "POST", "/v1/volumes", "T", `{"name":"x","size":-10,"location":"fsn1"}`, 422, "invalid_input"},
		{"no location or server", "POST", "/v1/volumes", "T", `{"name":"x","size":10}`, 422, "invalid_input"},
		{"unknown location", "POST", "/v1/volumes", "T", `{"name":"x","size":10,"location":"mars1"}`, 422, "invalid_input"},
		{"location of wrong type", "POST", "/v1/volumes", "T", `{"name":"x","size":10,"location":{"a":1}}`, 422, "invalid_input"},
		{"server and other location", "POST", "/v1/volumes", "T", `{"name":"x","size":10,"location":"hel1","server":` + itoa(sim.LocalServerID()) + `}`, 422, "invalid_input"},
		{"volume name too long", "POST", "/v1/volumes", "T", `{"name":"` + long + `","size":10,"location":"fsn1"}`, 422, "invalid_input"},
		{"volume name invalid", "POST", "/v1/volumes", "T", `{"name":"a b","size":10,"location":"fsn1"}`, 422, "invalid_input"},
		{"server name too long", "POST", "/v1/servers", "T", `{"name":"` + long + `","server_type":"cx23","image":"debian-12"}`, 422, "invalid_input"},
		{"server name invalid", "POST", "/v1/servers", "T", `{"name":"under_score","server_type":"cx23","image":"debian-12"}`, 422, "invalid_input"},
		{"server without image", "POST", "/v1/servers", "T", `{"name":"ok","server_type":"cx23"}`, 422, "invalid_input"},
		{"arm image on x86", "POST", "/v1/servers", "T", `{"name":"ok","server_type":"cx23","image":114690389}`, 422, "invalid_input"},
		{"ssh_keys of wrong type", "POST", "/v1/servers", "T", `{"name":"ok","server_type":"cx23","image":"debian-12","ssh_keys":"k"}`, 422, "invalid_input"},
		{"unknown ssh key", "POST", "/v1/servers", "T", `{"name":"ok","server_type":"cx23","image":"debian-12","ssh_keys":[77]}`, 422, "invalid_input"},
		{"unknown volume id", "GET", "/v1/volumes/987654", "T", "", 404, "not_found"},
		{"non-numeric id", "GET", "/v1/volumes/abc", "T", "", 404, "not_found"},
		{"negative id", "GET", "/v1/servers/-3", "T", "", 404, "not_found"},
		{"attach to unknown server", "POST", "/v1/volumes/987654/actions/attach", "T", `{"server": 1}`, 404, "not_found"},
		{"attach without server", "POST", "/v1/volumes/987654/actions/attach", "T", `{}`, 422, "invalid_input"},
		{"unknown action", "POST", srvPath + "/actions/explode", "T", `{}`, 404, "not_found"},
		{"method not allowed", "PATCH", "/v1/volumes", "T", "", 405, "method_not_allowed"},
		{"unknown endpoint", "GET", "/v1/teapots", "T", "", 404, "not_found"},
		{"bad page", "GET", "/v1/volumes?page=0", "T", "", 422, "invalid_input"},
		{"bad per_page", "GET", "/v1/volumes?per_page=x", "T", "", 422, "invalid_input"},
		{"bad sort", "GET", "/v1/servers?sort=password", "T", "", 422, "invalid_input"},
		{"bad label selector", "GET", "/v1/servers?label_selector=a%20in%20(b", "T", "", 422, "invalid_input"},
		{"bad labels", "PUT", srvPath, "T", `{"labels":{"-x":"y"}}`, 422, "invalid_input"},
		{"bad firewall rule", "POST", "/v1/firewalls", "T", `{"name":"f","rules":[{"direction":"sideways","protocol":"tcp"}]}`, 422, "invalid_input"},
		{"bad firewall cidr", "POST", "/v1/firewalls", "T", `{"name":"f","rules":[{"direction":"in","protocol":"icmp","source_ips":["10.0.0.300/8"]}]}`, 422, "invalid_input"},
		{"huge body", "POST", "/v1/volumes", "T", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 400, "json_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token
			if tok == "T" {
				tok = sim.Token
			}
			r := raw(t, sim, tc.method, tc.path, tok, []byte(tc.body))
			if r.status != tc.status || r.err.Error.Code != tc.code {
				t.Errorf("%s %s: status %d code %q (%s), want %d %s", tc.method, tc.path, r.status, r.err.Error.Code, r.err.Error.Message, tc.status, tc.code)
			}
			if r.err.Error.Message == "" {
				t.Errorf("error without a message")
			}
		})
	}
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

// FuzzDecodeRequests throws arbitrary bodies at the endpoints that decode JSON. Whatever
// the input, the answer must be a well-formed API answer below 500.
func FuzzDecodeRequests(f *testing.F) {
	seeds := []string{
		`{"name":"v","size":10,"location":"fsn1"}`,
		`{"name":"v","size":10,"server":1001,"format":"xfs","automount":true,"labels":{"a":"b"}}`,
		`{"name":"s","server_type":"cx23","image":"docker-ce","location":"fsn1","volumes":[1],"user_data":"#cloud-config"}`,
		`{"name":"s","server_type":104,"image":114690387,"datacenter":"fsn1-dc14","firewalls":[{"firewall":1}]}`,
		`{"name":"k","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3m3v7l7rJ0sM3k2bY8x0P0n8b0p6qz5m1x0K3f0h3v x"}`,
		`{"name":"f","rules":[{"direction":"in","protocol":"tcp","port":"22","source_ips":["0.0.0.0/0"]}],"apply_to":[{"type":"label_selector","label_selector":{"selector":"a=b"}}]}`,
		`{"server":1001,"automount":false}`, `{"size":20}`, `{"delete":true}`,
		`{"name":"","size":-1}`, `{"labels":{"":""}}`, `null`, `""`, `[]`, `{"name":"\u0000"}`,
		`{"server_type":{"id":1},"image":[]}`, `{"size":1e309}`, `{"size":9223372036854775808}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	sim, err := hcloudsim.New(f.Context(), hcloudsim.Config{Token: "t", LocalServer: "me"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sim.Close() })
	local := itoa(sim.LocalServerID())
	paths := []struct{ method, path string }{
		{"POST", "/v1/volumes"}, {"POST", "/v1/servers"}, {"POST", "/v1/ssh_keys"}, {"POST", "/v1/firewalls"},
		{"PUT", "/v1/servers/" + local}, {"POST", "/v1/servers/" + local + "/actions/change_protection"},
		{"POST", "/v1/servers/" + local + "/actions/poweron"},
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		p := paths[int(which)%len(paths)]
		req := httptest.NewRequest(p.method, p.path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: status %d: %s", p.method, p.path, body, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("content type %q", ct)
		}
	})
}

var _ = http.StatusOK
