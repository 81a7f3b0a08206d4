package hcloudsim

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// The static catalog: locations, datacenters, server types, images and prices, as Hetzner
// sells them in August 2026 (README.md says where every figure comes from). Prices are EUR,
// net, for new orders after the price adjustment of 2026-06-15; they are for cost estimates
// in tests and demos, not quotes. Which type is offered, deprecated or out of stock where
// is the serverCatalog's state (servertypes.go): a test or a person changes it with
// Config.Catalog, --catalog or POST /_sim/catalog.

var catalogLocations = []schema.Location{
	{ID: 1, Name: "fsn1", Description: "Falkenstein DC Park 1", Country: "DE", City: "Falkenstein", Latitude: 50.47612, Longitude: 12.370071, NetworkZone: "eu-central"},
	{ID: 2, Name: "nbg1", Description: "Nuremberg DC Park 1", Country: "DE", City: "Nuremberg", Latitude: 49.452102, Longitude: 11.076665, NetworkZone: "eu-central"},
	{ID: 3, Name: "hel1", Description: "Helsinki DC Park 1", Country: "FI", City: "Helsinki", Latitude: 60.169855, Longitude: 24.938379, NetworkZone: "eu-central"},
	{ID: 4, Name: "ash", Description: "Ashburn, VA", Country: "US", City: "Ashburn, VA", Latitude: 39.045821, Longitude: -77.487073, NetworkZone: "us-east"},
	{ID: 5, Name: "hil", Description: "Hillsboro, OR", Country: "US", City: "Hillsboro, OR", Latitude: 45.54222, Longitude: -122.951924, NetworkZone: "us-west"},
	{ID: 6, Name: "sin", Description: "Singapore", Country: "SG", City: "Singapore", Latitude: 1.283333, Longitude: 103.833333, NetworkZone: "ap-southeast"},
}

var catalogDatacenterNames = map[string]string{
	"fsn1": "fsn1-dc14", "nbg1": "nbg1-dc3", "hel1": "hel1-dc2", "ash": "ash-dc1", "hil": "hil-dc1", "sin": "sin-dc1",
}

type serverTypeSpec struct {
	id                int64
	name, desc, cpu   string
	arch, category    string
	cores             int
	memory            float32
	disk              int
	monthly           string   // net EUR per month (the hourly price is monthly/624, as Hetzner's)
	locations         []string // where the type is offered (listed in its locations[])
	deprecatedIn      []string // where it is deprecated, with gen1Deprecation
	removed           bool     // gone from the API: not listed, not orderable, still shown on servers that have it
	includedTrafficTB uint64
}

var (
	euLocations  = []string{"fsn1", "nbg1", "hel1"}
	euSin        = []string{"fsn1", "nbg1", "hel1", "sin"}
	allLocations = []string{"fsn1", "nbg1", "hel1", "ash", "hil", "sin"}
)

// gen1Deprecation is the deprecation of the CX gen 2 and CPX gen 1 types, announced in
// Hetzner's changelog on 2025-10-16 ("removed from the API at the end of the year").
var gen1Deprecation = schema.DeprecationInfo{
	Announced:        time.Date(2025, 10, 16, 0, 0, 0, 0, time.UTC),
	UnavailableAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
}

// catalogServerTypeSpecs: ids, sizes and prices as README.md ("The catalog") documents.
var catalogServerTypeSpecs = []serverTypeSpec{
	// Cost-Optimized, shared x86 (CX gen 3), EU only.
	{id: 114, name: "cx23", desc: "CX23", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 2, memory: 4, disk: 40, monthly: "5.49", locations: euLocations},
	{id: 115, name: "cx33", desc: "CX33", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 4, memory: 8, disk: 80, monthly: "8.49", locations: euLocations},
	{id: 116, name: "cx43", desc: "CX43", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 8, memory: 16, disk: 160, monthly: "15.99", locations: euLocations},
	{id: 117, name: "cx53", desc: "CX53", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 16, memory: 32, disk: 320, monthly: "29.49", locations: euLocations},
	// Cost-Optimized, shared Arm (Ampere), EU only.
	{id: 45, name: "cax11", desc: "CAX11", cpu: "shared", arch: "arm", category: "cost_optimized", cores: 2, memory: 4, disk: 40, monthly: "5.99", locations: euLocations},
	{id: 93, name: "cax21", desc: "CAX21", cpu: "shared", arch: "arm", category: "cost_optimized", cores: 4, memory: 8, disk: 80, monthly: "10.49", locations: euLocations},
	{id: 94, name: "cax31", desc: "CAX31", cpu: "shared", arch: "arm", category: "cost_optimized", cores: 8, memory: 16, disk: 160, monthly: "20.99", locations: euLocations},
	{id: 95, name: "cax41", desc: "CAX41", cpu: "shared", arch: "arm", category: "cost_optimized", cores: 16, memory: 32, disk: 320, monthly: "40.99", locations: euLocations},
	// Regular Performance, shared AMD (CPX gen 2), EU and Singapore.
	{id: 108, name: "cpx12", desc: "CPX12", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 1, memory: 2, disk: 40, monthly: "11.49", locations: euSin},
	{id: 109, name: "cpx22", desc: "CPX22", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 2, memory: 4, disk: 80, monthly: "19.49", locations: euSin},
	{id: 110, name: "cpx32", desc: "CPX32", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 4, memory: 8, disk: 160, monthly: "35.49", locations: euSin},
	{id: 111, name: "cpx42", desc: "CPX42", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 8, memory: 16, disk: 320, monthly: "63.49", locations: euSin},
	{id: 112, name: "cpx52", desc: "CPX52", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 12, memory: 24, disk: 480, monthly: "90.99", locations: euSin},
	{id: 113, name: "cpx62", desc: "CPX62", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 16, memory: 32, disk: 640, monthly: "125.99", locations: euSin},
	// Regular Performance gen 1: deprecated in the EU and Singapore, still sold in the US.
	{id: 22, name: "cpx11", desc: "CPX 11", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 2, memory: 2, disk: 40, monthly: "17.49", locations: allLocations, deprecatedIn: euSin},
	{id: 23, name: "cpx21", desc: "CPX 21", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 3, memory: 4, disk: 80, monthly: "19.49", locations: allLocations, deprecatedIn: euSin},
	{id: 24, name: "cpx31", desc: "CPX 31", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 4, memory: 8, disk: 160, monthly: "35.49", locations: allLocations, deprecatedIn: euSin},
	{id: 25, name: "cpx41", desc: "CPX 41", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 8, memory: 16, disk: 240, monthly: "63.49", locations: allLocations, deprecatedIn: euSin},
	{id: 26, name: "cpx51", desc: "CPX 51", cpu: "shared", arch: "x86", category: "regular_purpose", cores: 16, memory: 32, disk: 360, monthly: "125.99", locations: allLocations, deprecatedIn: euSin},
	// General Purpose, dedicated AMD, everywhere.
	{id: 96, name: "ccx13", desc: "CCX13", cpu: "dedicated", arch: "x86", category: "general_purpose", cores: 2, memory: 8, disk: 80, monthly: "42.99", locations: allLocations},
	{id: 97, name: "ccx23", desc: "CCX23", cpu: "dedicated", arch: "x86", category: "general_purpose", cores: 4, memory: 16, disk: 160, monthly: "75.99", locations: allLocations},
	{id: 98, name: "ccx33", desc: "CCX33", cpu: "dedicated", arch: "x86", category: "general_purpose", cores: 8, memory: 32, disk: 240, monthly: "150.99", locations: allLocations},
	{id: 99, name: "ccx43", desc: "CCX43", cpu: "dedicated", arch: "x86", category: "general_purpose", cores: 16, memory: 64, disk: 360, monthly: "301.49", locations: allLocations},
	{id: 100, name: "ccx53", desc: "CCX53", cpu: "dedicated", arch: "x86", category: "general_purpose", cores: 32, memory: 128, disk: 600, monthly: "533.49", locations: allLocations},
	{id: 101, name: "ccx63", desc: "CCX63", cpu: "dedicated", arch: "x86", category: "general_purpose", cores: 48, memory: 192, disk: 960, monthly: "902.99", locations: allLocations},
	// CX gen 2: removed from the API in January 2026. Kept so that servers created before
	// (and simulator state files of earlier versions) still show their type.
	{id: 104, name: "cx22", desc: "CX22", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 2, memory: 4, disk: 40, monthly: "3.99", locations: euLocations, deprecatedIn: euLocations, removed: true},
	{id: 105, name: "cx32", desc: "CX32", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 4, memory: 8, disk: 80, monthly: "6.49", locations: euLocations, deprecatedIn: euLocations, removed: true},
	{id: 106, name: "cx42", desc: "CX42", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 8, memory: 16, disk: 160, monthly: "11.99", locations: euLocations, deprecatedIn: euLocations, removed: true},
	{id: 107, name: "cx52", desc: "CX52", cpu: "shared", arch: "x86", category: "cost_optimized", cores: 16, memory: 32, disk: 320, monthly: "22.49", locations: euLocations, deprecatedIn: euLocations, removed: true},
}

func init() {
	for i := range catalogServerTypeSpecs {
		catalogServerTypeSpecs[i].includedTrafficTB = 20
	}
}

func price(net string) schema.Price {
	// 19% VAT for the gross figure, like a German project.
	f, _ := strconv.ParseFloat(net, 64)
	return schema.Price{Net: fmt.Sprintf("%.10f", f), Gross: fmt.Sprintf("%.10f", f*1.19)}
}

// hourly is Hetzner's hourly price for a monthly one: the monthly cap is reached after
// 624 hours (e.g. 6.49 -> 0.0104, 35.49 -> 0.0569, as the API answers).
func hourly(monthly string) string {
	m, _ := strconv.ParseFloat(monthly, 64)
	return strconv.FormatFloat(math.Round(m/624*10000)/10000, 'f', 4, 64)
}

func (st serverTypeSpec) prices() []schema.PricingServerTypePrice {
	var ps []schema.PricingServerTypePrice
	for _, l := range st.locations {
		ps = append(ps, schema.PricingServerTypePrice{
			Location: l, PriceHourly: price(hourly(st.monthly)), PriceMonthly: price(st.monthly),
			IncludedTraffic: st.includedTrafficTB * 1 << 40, PricePerTBTraffic: price("1.0000"),
		})
	}
	return ps
}

func locationByName(name string) (schema.Location, bool) {
	for _, l := range catalogLocations {
		if l.Name == name {
			return l, true
		}
	}
	return schema.Location{}, false
}

func locationByIDOrName(v schema.IDOrName) (schema.Location, bool) {
	for _, l := range catalogLocations {
		if (v.ID != 0 && l.ID == v.ID) || (v.Name != "" && l.Name == v.Name) {
			return l, true
		}
	}
	return schema.Location{}, false
}

func locationNames() []string {
	out := make([]string, 0, len(catalogLocations))
	for _, l := range catalogLocations {
		out = append(out, l.Name)
	}
	return out
}

type imageSpec struct {
	id              int64
	name, desc, typ string
	flavor, version string
	arch            string
	disk            float32
}

// catalogImages: system images in both architectures, plus the docker-ce app image that
// dockbridge uses.
var catalogImages = []imageSpec{
	{114690387, "debian-12", "Debian 12", "system", "debian", "12", "x86", 5},
	{114690389, "debian-12", "Debian 12", "system", "debian", "12", "arm", 5},
	{161547269, "ubuntu-24.04", "Ubuntu 24.04", "system", "ubuntu", "24.04", "x86", 5},
	{161547270, "ubuntu-24.04", "Ubuntu 24.04", "system", "ubuntu", "24.04", "arm", 5},
	{67794396, "ubuntu-22.04", "Ubuntu 22.04", "system", "ubuntu", "22.04", "x86", 5},
	{67794397, "ubuntu-22.04", "Ubuntu 22.04", "system", "ubuntu", "22.04", "arm", 5},
	{114690390, "rocky-9", "Rocky Linux 9", "system", "rocky", "9", "x86", 5},
	{159591431, "docker-ce", "Docker CE", "app", "ubuntu", "24.04", "x86", 10},
	{159591432, "docker-ce", "Docker CE", "app", "ubuntu", "24.04", "arm", 10},
}

var imageCreated = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

func (im imageSpec) schema() schema.Image {
	name, ver := im.name, im.version
	created := imageCreated
	return schema.Image{
		ID: im.id, Status: "available", Type: im.typ, Name: &name, Description: im.desc,
		DiskSize: im.disk, Created: &created, OSFlavor: im.flavor, OSVersion: &ver,
		Architecture: im.arch, RapidDeploy: true, Labels: map[string]string{},
	}
}

func (c *serverCatalog) pricingSchema() schema.Pricing {
	p := schema.Pricing{
		Currency: "EUR", VATRate: "19.00",
		Image:        schema.PricingImage{PricePerGBMonth: price("0.0110")},
		Volume:       schema.PricingVolume{PricePerGBPerMonth: price("0.0572")},
		ServerBackup: schema.PricingServerBackup{Percentage: "20.0000000000"},
		FloatingIP:   schema.PricingFloatingIP{PriceMonthly: price("3.0000")},
	}
	// The API lists floating IP and primary IP prices for the same types (ipv4, ipv6);
	// hcloud-go v2.52 relies on it (it sizes the primary IP list by the floating IP one).
	for _, typ := range []string{"ipv4", "ipv6"} {
		fip := schema.PricingFloatingIPType{Type: typ}
		for _, l := range catalogLocations {
			m := "3.0000"
			if typ == "ipv6" {
				m = "1.0000"
			}
			fip.Prices = append(fip.Prices, schema.PricingFloatingIPTypePrice{Location: l.Name, PriceMonthly: price(m)})
		}
		p.FloatingIPs = append(p.FloatingIPs, fip)
		pip := schema.PricingPrimaryIP{Type: typ}
		for _, l := range catalogLocations {
			m, h := "0.5000", "0.0008"
			if typ == "ipv6" {
				m, h = "0.0000", "0.0000"
			}
			pip.Prices = append(pip.Prices, schema.PricingPrimaryIPTypePrice{Location: l.Name, PriceHourly: price(h), PriceMonthly: price(m)})
		}
		p.PrimaryIPs = append(p.PrimaryIPs, pip)
	}
	for _, st := range c.listed() {
		p.ServerTypes = append(p.ServerTypes, schema.PricingServerType{ID: st.id, Name: st.name, Prices: st.prices()})
	}
	return p
}
