package hcloudsim

import (
	"fmt"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// The static catalog: locations, datacenters, server types, images and prices. Figures
// follow the public Hetzner price list (EUR, net, 2025); they are for cost estimates in
// tests and demos, not quotes.

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
	monthly, hourly   string
	locations         []string
	includedTrafficTB uint64
}

var euLocations = []string{"fsn1", "nbg1", "hel1"}
var allLocations = []string{"fsn1", "nbg1", "hel1", "ash", "hil", "sin"}

var catalogServerTypeSpecs = []serverTypeSpec{
	{22, "cpx11", "CPX 11", "shared", "x86", "regular_purpose", 2, 2, 40, "4.3500", "0.0070", allLocations, 20},
	{23, "cpx21", "CPX 21", "shared", "x86", "regular_purpose", 3, 4, 80, "7.5500", "0.0121", allLocations, 20},
	{104, "cx22", "CX22", "shared", "x86", "cost_optimized", 2, 4, 40, "3.7900", "0.0060", euLocations, 20},
	{105, "cx32", "CX32", "shared", "x86", "cost_optimized", 4, 8, 80, "6.8000", "0.0110", euLocations, 20},
	{45, "cax11", "CAX11", "shared", "arm", "cost_optimized", 2, 4, 40, "3.7900", "0.0060", euLocations, 20},
	{96, "ccx13", "CCX13", "dedicated", "x86", "general_purpose", 2, 8, 80, "12.4900", "0.0200", allLocations, 20},
}

func price(net string) schema.Price {
	// 19% VAT for the gross figure, like a German project.
	var f float64
	fmt.Sscanf(net, "%f", &f)
	return schema.Price{Net: fmt.Sprintf("%.10f", f), Gross: fmt.Sprintf("%.10f", f*1.19)}
}

func (st serverTypeSpec) prices() []schema.PricingServerTypePrice {
	var ps []schema.PricingServerTypePrice
	for _, l := range st.locations {
		ps = append(ps, schema.PricingServerTypePrice{
			Location: l, PriceHourly: price(st.hourly), PriceMonthly: price(st.monthly),
			IncludedTraffic: st.includedTrafficTB * 1 << 40, PricePerTBTraffic: price("1.0000"),
		})
	}
	return ps
}

func (st serverTypeSpec) schema() schema.ServerType {
	out := schema.ServerType{
		ID: st.id, Name: st.name, Description: st.desc, Category: st.category, Cores: st.cores,
		Memory: st.memory, Disk: st.disk, StorageType: "local", CPUType: st.cpu, Architecture: st.arch,
		Prices: st.prices(),
	}
	for _, l := range st.locations {
		loc, _ := locationByName(l)
		out.Locations = append(out.Locations, schema.ServerTypeLocation{ID: loc.ID, Name: loc.Name, Available: true, Recommended: true})
	}
	return out
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

func serverTypeByIDOrName(v schema.IDOrName) (serverTypeSpec, bool) {
	for _, st := range catalogServerTypeSpecs {
		if (v.ID != 0 && st.id == v.ID) || (v.Name != "" && st.name == v.Name) {
			return st, true
		}
	}
	return serverTypeSpec{}, false
}

func datacenterSchema(loc schema.Location) schema.Datacenter {
	var ids []int64
	for _, st := range catalogServerTypeSpecs {
		if contains(st.locations, loc.Name) {
			ids = append(ids, st.id)
		}
	}
	return schema.Datacenter{
		ID: loc.ID, Name: catalogDatacenterNames[loc.Name], Description: loc.City + " DC", Location: loc,
		ServerTypes: &schema.DatacenterServerTypes{Supported: ids, Available: ids, AvailableForMigration: ids},
	}
}

func datacenterByIDOrName(v schema.IDOrName) (schema.Datacenter, bool) {
	for _, l := range catalogLocations {
		dc := datacenterSchema(l)
		if (v.ID != 0 && dc.ID == v.ID) || (v.Name != "" && dc.Name == v.Name) {
			return dc, true
		}
	}
	return schema.Datacenter{}, false
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

func pricingSchema() schema.Pricing {
	p := schema.Pricing{
		Currency: "EUR", VATRate: "19.00",
		Image:        schema.PricingImage{PricePerGBMonth: price("0.0110")},
		Volume:       schema.PricingVolume{PricePerGBPerMonth: price("0.0440")},
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
	for _, st := range catalogServerTypeSpecs {
		p.ServerTypes = append(p.ServerTypes, schema.PricingServerType{ID: st.id, Name: st.name, Prices: st.prices()})
	}
	return p
}
