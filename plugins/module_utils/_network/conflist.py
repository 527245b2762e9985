# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named networks as CNI network configuration lists (`<config_dir>/<name>.conflist`): written, read, checked.

No config.json field is applied here. A network's settings (oci_network's
options) become one list: `bridge` (or `macvlan`) with `host-local` IPAM,
then `portmap` (published ports), `firewall` (the forwarding rules;
`ingressPolicy: same-bridge` isolates the network), and
`dnsname` (dnsmasq on the bridge, names of the containers) when `dns` is on.
A list read back from disk is hostile input like any file: it is checked
before a plugin sees it.
"""
import hashlib
import ipaddress
import json
import os
import re
import struct

from ansible_collections.daemonless.oci.plugins.module_utils._network.cni import CNI_VERSION, SUPPORTED_VERSIONS
from ansible_collections.daemonless.oci.plugins.module_utils._network.defaults import DEFAULT_CONFIG_DIR  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

SUFFIX = ".conflist"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DRIVERS = ("bridge", "macvlan")
DNS_DOMAIN = "dns.oci"  # the search domain under which dnsname answers the containers' names
# Where a network without `subnet` gets one: the first /24 of this block that no other list uses and no
# route of the host reaches.
AUTO_SUBNETS = ipaddress.ip_network("10.89.0.0/16")
ROUTES = "/proc/net/route"
MAX_FILE = 1 << 20
# The key under which the list keeps the settings it was made from (CNI ignores keys it does not know).
SETTINGS_KEY = "org.daemonless.oci"
SETTING_NAMES = ("name", "driver", "subnet", "gateway", "ip_range", "interface_name", "parent", "ip_masquerade",
                 "internal", "isolate", "dns")


def host_routes(path=ROUTES):
    """{"route on IFACE": subnet text} of the host's IPv4 routes but the default one: a block the host already
    reaches another way (a LAN, a VPN, another runtime's bridge) is no automatic subnet, as podman avoids it."""
    found = {}
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        try:
            # The kernel prints each address as a number in the host's byte order.
            destination, mask = (struct.pack("=I", int(fields[index], 16)) for index in (1, 7))
        except (IndexError, ValueError, struct.error):
            continue
        prefix = bin(int.from_bytes(mask, "big")).count("1")
        if prefix:
            found["route on %s" % fields[0]] = str(ipaddress.ip_network((destination, prefix), strict=False))
    return found


def validate_name(name, option="name"):
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise OCIError("%s: %r is not a network name (letters, digits and _ . -, at most 63, "
                       "starting with a letter or digit; no '/')" % (option, name))
    return name


def path_of(config_dir, name):
    return os.path.join(config_dir, validate_name(name) + SUFFIX)


def default_interface(name):
    """The bridge of network NAME when none is given: stable, unique enough, within IFNAMSIZ (15)."""
    return "oci" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def settings_from(params, taken=()):
    """The settings a network is made from: PARAMS (oci_network's) checked, defaults filled in.

    TAKEN: {name: subnet} of the other networks, for the automatic subnet."""
    name = validate_name(params["name"])
    driver = params.get("driver") or "bridge"
    if driver not in DRIVERS:
        raise OCIError("driver: must be one of %s, not %r" % (", ".join(DRIVERS), driver))
    subnet_text = params.get("subnet")
    if subnet_text:
        try:
            subnet = ipaddress.ip_network(subnet_text, strict=True)
        except ValueError as exc:
            raise OCIError("subnet: %r is not a network address with its prefix (such as 10.89.1.0/24): %s"
                           % (subnet_text, exc))
        if subnet.version != 4:
            raise OCIError("subnet: %s: only IPv4 subnets are supported" % subnet)
        if subnet.prefixlen > 30:
            raise OCIError("subnet: %s: too small (the prefix may be at most /30)" % subnet)
    else:
        used = [ipaddress.ip_network(s) for s in taken.values() if s] if isinstance(taken, dict) else []
        subnet = next((candidate for candidate in AUTO_SUBNETS.subnets(new_prefix=24)
                       if not any(candidate.overlaps(other) for other in used)), None)
        if subnet is None:
            raise OCIError("subnet: none given and every /24 of %s is taken: give one" % AUTO_SUBNETS)
    hosts = subnet.hosts()
    gateway = params.get("gateway")
    if gateway:
        try:
            gateway_ip = ipaddress.ip_address(gateway)
        except ValueError:
            raise OCIError("gateway: %r is not an IP address" % gateway)
        if gateway_ip not in subnet or gateway_ip in (subnet.network_address, subnet.broadcast_address):
            raise OCIError("gateway: %s is not a host address of subnet %s" % (gateway_ip, subnet))
    else:
        gateway_ip = next(hosts)
    ip_range = params.get("ip_range")
    if ip_range:
        try:
            range_net = ipaddress.ip_network(ip_range, strict=True)
        except ValueError as exc:
            raise OCIError("ip_range: %r is not a network with its prefix: %s" % (ip_range, exc))
        if not range_net.subnet_of(subnet):
            raise OCIError("ip_range: %s is not inside subnet %s" % (range_net, subnet))
        ip_range = str(range_net)
    interface = params.get("interface_name") or default_interface(name)
    if not re.match(r"^[A-Za-z0-9_.-]{1,15}$", interface):
        raise OCIError("interface_name: %r is not an interface name (at most 15 of A-Za-z0-9_.-)" % interface)
    parent = params.get("parent")
    if driver == "macvlan":
        if not parent:
            raise OCIError("parent: driver macvlan needs the host interface the network sits on")
        if not os.path.isdir(os.path.join("/sys/class/net", parent)) or "/" in parent:
            raise OCIError("parent: %r is not a network interface of this host" % parent)
    elif parent:
        raise OCIError("parent: only for driver macvlan")
    return {"name": name, "driver": driver, "subnet": str(subnet), "gateway": str(gateway_ip),
            "ip_range": ip_range, "interface_name": interface if driver == "bridge" else None, "parent": parent,
            "ip_masquerade": bool(params.get("ip_masquerade", True)), "internal": bool(params.get("internal")),
            "isolate": bool(params.get("isolate")), "dns": bool(params.get("dns", True)) and driver == "bridge"}


def build(settings):
    """The conflist (a dict) for SETTINGS (settings_from's)."""
    subnet = ipaddress.ip_network(settings["subnet"])
    address_range = {"subnet": str(subnet), "gateway": settings["gateway"]}
    if settings["ip_range"]:
        pool = ipaddress.ip_network(settings["ip_range"])
        first, last = pool.network_address + 1, pool.broadcast_address - 1
        address_range.update(rangeStart=str(max(first, subnet.network_address + 1)),
                             rangeEnd=str(min(last, subnet.broadcast_address - 1)))
    ipam = {"type": "host-local", "ranges": [[address_range]], "routes": []}
    if not settings["internal"]:
        ipam["routes"] = [{"dst": "0.0.0.0/0"}]
    if settings["driver"] == "bridge":
        main = {"type": "bridge", "bridge": settings["interface_name"], "isGateway": True,
                "ipMasq": settings["ip_masquerade"] and not settings["internal"], "hairpinMode": True, "ipam": ipam}
    else:
        main = {"type": "macvlan", "master": settings["parent"], "mode": "bridge", "ipam": ipam}
    plugins = [main, {"type": "portmap", "capabilities": {"portMappings": True}}]
    if settings["driver"] == "bridge":
        firewall = {"type": "firewall", "backend": "iptables"}
        if settings["isolate"]:
            firewall["ingressPolicy"] = "same-bridge"
        plugins.append(firewall)
    if settings["dns"]:
        plugins.append({"type": "dnsname", "domainName": DNS_DOMAIN, "capabilities": {"aliases": True}})
    return {"cniVersion": CNI_VERSION, "name": settings["name"], "plugins": plugins,
            SETTINGS_KEY: dict((key, settings[key]) for key in SETTING_NAMES)}


def text_of(conflist):
    return json.dumps(conflist, indent=2, sort_keys=True) + "\n"


def validate(conflist, where):
    """CONFLIST (parsed from WHERE) checked as a network configuration list; OCIError naming WHERE."""
    if not isinstance(conflist, dict):
        raise OCIError("%s: not a JSON object" % where)
    if conflist.get("cniVersion") not in SUPPORTED_VERSIONS:
        raise OCIError("%s: cniVersion %r is not one of %s" % (where, conflist.get("cniVersion"),
                                                               ", ".join(SUPPORTED_VERSIONS)))
    validate_name(conflist.get("name"), "%s: name" % where)
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise OCIError("%s: plugins must be a non-empty list" % where)
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, dict):
            raise OCIError("%s: plugins[%d] is not an object" % (where, index))
        kind = plugin.get("type")
        if not isinstance(kind, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", kind) or kind in (".", ".."):
            raise OCIError("%s: plugins[%d].type %r is not a plugin name" % (where, index, kind))
        if not isinstance(plugin.get("capabilities", {}), dict):
            raise OCIError("%s: plugins[%d].capabilities is not an object" % (where, index))
    return conflist


def read(config_dir, name, option="network"):
    """The conflist of network NAME, checked; OCIError naming OPTION when there is none."""
    path = path_of(config_dir, validate_name(name, option))
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise OCIError("%s: no network named %r (no %s; make it with daemonless.oci.oci_network)"
                       % (option, name, path))
    except OSError as exc:
        raise OCIError("%s: %s: %s" % (option, path, exc.strerror))
    if len(raw) > MAX_FILE:
        raise OCIError("%s: %s is larger than %d bytes" % (option, path, MAX_FILE))
    try:
        conflist = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OCIError("%s: %s is not JSON: %s" % (option, path, exc))
    validate(conflist, "%s: %s" % (option, path))
    if conflist["name"] != name:
        raise OCIError("%s: %s names network %r, not %r" % (option, path, conflist["name"], name))
    return conflist


def subnets_of(conflist):
    """The subnets a list's IPAM hands out (what overlap is judged on); unreadable parts give none."""
    found = []
    for plugin in conflist.get("plugins") or []:
        ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
        if not isinstance(ipam, dict):
            continue
        ranges = ipam.get("ranges") or []
        if ipam.get("subnet"):
            ranges = ranges + [[{"subnet": ipam["subnet"]}]]
        for group in ranges if isinstance(ranges, list) else []:
            for entry in group if isinstance(group, list) else []:
                try:
                    found.append(ipaddress.ip_network(entry.get("subnet"), strict=False))
                except (AttributeError, TypeError, ValueError):
                    continue
    return found


def all_networks(config_dir):
    """{name: conflist} of the lists in CONFIG_DIR that parse (other tools' files included)."""
    networks = {}
    try:
        names = sorted(os.listdir(config_dir))
    except FileNotFoundError:
        return networks
    for filename in names:
        if not filename.endswith((SUFFIX, ".conf")):
            continue
        try:
            with open(os.path.join(config_dir, filename), "rb") as handle:
                conflist = json.loads(handle.read(MAX_FILE).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(conflist, dict) and isinstance(conflist.get("name"), str):
            networks.setdefault(conflist["name"], conflist)
    return networks


def check_overlap(settings, others):
    """OCIError naming the network at fault when SETTINGS' subnet overlaps one of OTHERS ({name: conflist})."""
    mine = ipaddress.ip_network(settings["subnet"])
    for name, conflist in sorted(others.items()):
        if name == settings["name"]:
            continue
        for subnet in subnets_of(conflist):
            if subnet.version == mine.version and subnet.overlaps(mine):
                raise OCIError("subnet: %s overlaps subnet %s of network %r" % (mine, subnet, name))


def write(config_dir, conflist):
    os.makedirs(config_dir, mode=0o755, exist_ok=True)
    atomicfile.write(path_of(config_dir, conflist["name"]), text_of(conflist), mode=0o644)


def settings_of(conflist):
    """The settings a list of ours was made from ({} for a list made by something else)."""
    settings = conflist.get(SETTINGS_KEY)
    return dict(settings) if isinstance(settings, dict) else {}
