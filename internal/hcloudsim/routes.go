package hcloudsim

import "context"

func (s *Sim) routes() {
	rt := &s.api
	rt.handle("GET", "/v1/locations", s.listLocations)
	rt.handle("GET", "/v1/locations/{id}", s.getLocation)
	rt.handle("GET", "/v1/datacenters", s.listDatacenters)
	rt.handle("GET", "/v1/datacenters/{id}", s.getDatacenter)
	rt.handle("GET", "/v1/server_types", s.listServerTypes)
	rt.handle("GET", "/v1/server_types/{id}", s.getServerType)
	rt.handle("GET", "/v1/images", s.listImages)
	rt.handle("GET", "/v1/images/{id}", s.getImage)
	rt.handle("GET", "/v1/pricing", s.getPricing)

	rt.handle("GET", "/v1/actions", s.listActions("", false))
	rt.handle("GET", "/v1/actions/{id}", s.getAction("", false))

	rt.handle("GET", "/v1/ssh_keys", s.listSSHKeys)
	rt.handle("POST", "/v1/ssh_keys", s.createSSHKey)
	rt.handle("GET", "/v1/ssh_keys/{id}", s.getSSHKey)
	rt.handle("PUT", "/v1/ssh_keys/{id}", s.updateSSHKey)
	rt.handle("DELETE", "/v1/ssh_keys/{id}", s.deleteSSHKey)

	rt.handle("GET", "/v1/servers", s.listServers)
	rt.handle("POST", "/v1/servers", s.createServer)
	rt.handle("GET", "/v1/servers/{id}", s.getServer)
	rt.handle("PUT", "/v1/servers/{id}", s.updateServer)
	rt.handle("DELETE", "/v1/servers/{id}", s.deleteServer)
	rt.handle("POST", "/v1/servers/{id}/actions/poweron", s.serverPowerAction("start_server", "starting", "running",
		func(s *Sim) func(ctx context.Context, id int64) error { return s.backend.StartServer }))
	rt.handle("POST", "/v1/servers/{id}/actions/poweroff", s.serverPowerAction("stop_server", "stopping", "off", powerCut))
	rt.handle("POST", "/v1/servers/{id}/actions/shutdown", s.shutdownServer)
	rt.handle("POST", "/v1/servers/{id}/actions/reboot", s.serverPowerAction("reboot_server", "", "running", restart))
	rt.handle("POST", "/v1/servers/{id}/actions/reset", s.serverPowerAction("reset_server", "", "running", restart))
	rt.handle("POST", "/v1/servers/{id}/actions/change_protection", s.changeServerProtection)
	rt.handle("POST", "/v1/servers/{id}/actions/attach_to_network", s.attachToNetwork)
	rt.handle("POST", "/v1/servers/{id}/actions/detach_from_network", s.detachFromNetwork)
	rt.handle("POST", "/v1/servers/{id}/actions/change_alias_ips", s.changeAliasIPs)
	s.resourceActionRoutes("servers", "server")

	rt.handle("GET", "/v1/volumes", s.listVolumes)
	rt.handle("POST", "/v1/volumes", s.createVolume)
	rt.handle("GET", "/v1/volumes/{id}", s.getVolume)
	rt.handle("PUT", "/v1/volumes/{id}", s.updateVolume)
	rt.handle("DELETE", "/v1/volumes/{id}", s.deleteVolume)
	rt.handle("POST", "/v1/volumes/{id}/actions/attach", s.attachVolume)
	rt.handle("POST", "/v1/volumes/{id}/actions/detach", s.detachVolume)
	rt.handle("POST", "/v1/volumes/{id}/actions/resize", s.resizeVolume)
	rt.handle("POST", "/v1/volumes/{id}/actions/change_protection", s.changeVolumeProtection)
	s.resourceActionRoutes("volumes", "volume")

	rt.handle("GET", "/v1/firewalls", s.listFirewalls)
	rt.handle("POST", "/v1/firewalls", s.createFirewall)
	rt.handle("GET", "/v1/firewalls/{id}", s.getFirewall)
	rt.handle("PUT", "/v1/firewalls/{id}", s.updateFirewall)
	rt.handle("DELETE", "/v1/firewalls/{id}", s.deleteFirewall)
	rt.handle("POST", "/v1/firewalls/{id}/actions/set_rules", s.setFirewallRules)
	rt.handle("POST", "/v1/firewalls/{id}/actions/apply_to_resources", s.applyFirewall)
	rt.handle("POST", "/v1/firewalls/{id}/actions/remove_from_resources", s.removeFirewall)
	s.resourceActionRoutes("firewalls", "firewall")

	rt.handle("GET", "/v1/networks", s.listNetworks)
	rt.handle("POST", "/v1/networks", s.createNetwork)
	rt.handle("GET", "/v1/networks/{id}", s.getNetwork)
	rt.handle("PUT", "/v1/networks/{id}", s.updateNetwork)
	rt.handle("DELETE", "/v1/networks/{id}", s.deleteNetwork)
	rt.handle("POST", "/v1/networks/{id}/actions/add_subnet", s.addSubnet)
	rt.handle("POST", "/v1/networks/{id}/actions/delete_subnet", s.deleteSubnet)
	rt.handle("POST", "/v1/networks/{id}/actions/add_route", s.addRoute)
	rt.handle("POST", "/v1/networks/{id}/actions/delete_route", s.deleteRoute)
	rt.handle("POST", "/v1/networks/{id}/actions/change_ip_range", s.changeIPRange)
	rt.handle("POST", "/v1/networks/{id}/actions/change_protection", s.changeNetworkProtection)
	s.resourceActionRoutes("networks", "network")
}

func (s *Sim) resourceActionRoutes(plural, typ string) {
	rt := &s.api
	rt.handle("GET", "/v1/"+plural+"/actions", s.listActions(typ, false))
	rt.handle("GET", "/v1/"+plural+"/actions/{id}", s.getAction(typ, false))
	rt.handle("GET", "/v1/"+plural+"/{id}/actions", s.listActions(typ, true))
	rt.handle("GET", "/v1/"+plural+"/{id}/actions/{action_id}", s.getAction(typ, true))
}

// restart is what reboot and reset do to a backend server: stop, then start.
func restart(s *Sim) func(ctx context.Context, id int64) error {
	return func(ctx context.Context, id int64) error {
		if err := s.backend.StopServer(ctx, id); err != nil {
			return err
		}
		return s.backend.StartServer(ctx, id)
	}
}

// powerCut is what poweroff does to a backend server: a power cut (PowerCutter), else a stop.
func powerCut(s *Sim) func(ctx context.Context, id int64) error {
	if pc, ok := s.backend.(PowerCutter); ok {
		return pc.PowerCut
	}
	return s.backend.StopServer
}
