# dockbridge simulated server: cloud-init's own Hetzner datasource, unchanged, except for how it
# recognises a Hetzner server. cloud-init ignores DMI in a container (dmi.read_dmi_data returns
# None), so the vendor and serial (the server ID) that DMI gives on a real server come from
# /etc/dockbridge-sim/dmi/, written by the simulator before the first boot. Metadata and
# user-data come from http://169.254.169.254/hetzner/v1/ exactly as on Hetzner Cloud.
from cloudinit import sources
from cloudinit.sources import DataSourceHetzner as hetzner

DMI_DIR = "/etc/dockbridge-sim/dmi"


def _read(key):
    try:
        with open(DMI_DIR + "/" + key) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def get_hcloud_data():
    if _read("system-manufacturer") != "Hetzner":
        return (False, None)
    serial = _read("system-serial-number")
    if not serial:
        raise RuntimeError("Hetzner Cloud detected, but no serial found")
    return (True, serial)


class DataSourceHetznerSim(hetzner.DataSourceHetzner):
    def _get_data(self):
        hetzner.get_hcloud_data = get_hcloud_data
        return super()._get_data()


datasources = [
    (DataSourceHetznerSim, (sources.DEP_FILESYSTEM,)),
]


def get_datasource_list(depends):
    return sources.list_from_depends(depends, datasources)
