# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's place on the network: what it asks for, what that adds to its config, attach and release.

Applies (adds to the config a container is created from): hostname;
linux.namespaces (the network entry: dropped for `host`, a path to the
container's persistent namespace for named networks); mounts (its
/etc/resolv.conf, /etc/hosts, /etc/hostname, bind-mounted read-only);
hooks.poststop (cni.py run alone, releasing the network when the container
is deleted, `ocirt delete --force` included); annotations
`org.daemonless.oci.network.*` (what the plan must compare but is not
config: published ports, the networks' settings).

The order of the lifecycle (container_state and reconcile call it): attach
begun before create (the namespace must exist for the runtime to join it)
and finished before start (the plugins' ADD runs while the container is
made), release once the container is stopped, just before its delete (the
poststop hook releases it when something else deletes the container). A
stopped container keeps its attachment.
"""
import hashlib
import ipaddress
import json
import os
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._network import bridge, cni, conflist, etcfiles, netns, ports
from ansible_collections.daemonless.oci.plugins.module_utils._network.hostname import HOSTNAME_RE, choose_hostname, with_hostname
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

ANNOTATION = "org.daemonless.oci.network."
DNS_POD_NAMESPACE = "oci"
# Plugins that do nothing for a container that gives them no value of their capability (portmap's ADD
# returns at once without portMappings, and its DEL then has no chain to remove): left out of that
# container's list, and so of its DEL and CHECK, which use the list as attached (the cache's).
IDLE_WITHOUT = {"portmap": "portMappings"}
FILES = (("resolv.conf", "/etc/resolv.conf"), ("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"))


class Request:
    """What a container asks of the network, checked: each error names the option at fault."""

    def __init__(self, mode, networks, publish, mappings, ip, hostname, dns_servers, dns_search, etc_hosts,
                 config_dir, cni_path):
        self.mode = mode  # "none", "host" or "cni"
        self.networks = networks  # {name: conflist}, in the order asked (the first gets eth0 and `ip`)
        self.publish = publish
        self.mappings = mappings
        self.ip = ip
        self.hostname = hostname
        self.dns_servers = dns_servers
        self.dns_search = dns_search
        self.etc_hosts = etc_hosts
        self.config_dir = config_dir
        self.cni_path = cni_path

    def annotations(self):
        if self.mode == "none":
            return {}
        digest = hashlib.sha256(json.dumps(self.networks, sort_keys=True).encode("utf-8")).hexdigest()[:16]
        values = {"mode": self.mode, "networks": ",".join(self.networks), "publish": json.dumps(self.mappings),
                  "ip": self.ip or "", "dns_servers": ",".join(self.dns_servers),
                  "dns_search": ",".join(self.dns_search), "etc_hosts": json.dumps(self.etc_hosts, sort_keys=True),
                  "config": digest}
        return dict((ANNOTATION + key, value) for key, value in values.items())


def _strings(value, option):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v and not any(c.isspace() for c in v)
                                              for v in value):
        raise OCIError("%s: must be a list of words (no spaces), not %r" % (option, value))
    return list(value)


def request_from(config, params):
    """The Request of oci_container_state's PARAMS for a container of bundle CONFIG (reads the networks' lists)."""
    network = params.get("network")
    if network is None or network == "none" or network == ["none"]:
        mode, names = "none", []
    elif network == "host" or network == ["host"]:
        mode, names = "host", []
    else:
        mode = "cni"
        names = [network] if isinstance(network, str) else network
        if not isinstance(names, list) or not names:
            raise OCIError("network: must be none, host or a list of network names, not %r" % (network,))
        for name in names:
            if name in ("none", "host"):
                raise OCIError("network: %s cannot be combined with other networks" % name)
            conflist.validate_name(name, "network")
        if len(set(names)) != len(names):
            raise OCIError("network: %r names a network twice" % (names,))
    config_dir = params.get("network_config_dir") or conflist.DEFAULT_CONFIG_DIR
    cni_path = params.get("cni_path") or cni.DEFAULT_CNI_PATH
    networks = dict((name, conflist.read(config_dir, name, "network")) for name in names)
    publish = list(params.get("publish") or [])
    mappings = ports.parse(publish)
    if mappings and mode != "cni":
        raise OCIError("publish: needs a network (the network option); with network %s there is nothing to "
                       "publish into" % mode)
    ip = params.get("ip") or None
    if ip:
        if mode != "cni":
            raise OCIError("ip: needs a network (the network option)")
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise OCIError("ip: %r is not an IP address" % ip)
        first = names[0]
        subnets = conflist.subnets_of(networks[first])
        if not any(address in subnet for subnet in subnets):
            raise OCIError("ip: %s is not in network %s (%s)" % (ip, first, ", ".join(str(s) for s in subnets)))
        ip = str(address)
    dns_servers = _strings(params.get("dns_servers"), "dns_servers")
    for server in dns_servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise OCIError("dns_servers: %r is not an IP address" % server)
    dns_search = _strings(params.get("dns_search"), "dns_search")
    etc_hosts = params.get("etc_hosts") or {}
    if not isinstance(etc_hosts, dict):
        raise OCIError("etc_hosts: must be a dict of host name: address")
    for name, address in etc_hosts.items():
        if not isinstance(name, str) or not HOSTNAME_RE.match(name):
            raise OCIError("etc_hosts: %r is not a host name" % (name,))
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            raise OCIError("etc_hosts: %s: %r is not an IP address" % (name, address))
    etc_hosts = dict((name, str(address)) for name, address in etc_hosts.items())
    if mode == "none" and (dns_servers or dns_search or etc_hosts):
        raise OCIError("dns_servers, dns_search, etc_hosts: need network host or a network list (with network "
                       "none the container keeps its image's files)")
    return Request(mode, networks, publish, mappings, ip, choose_hostname(config, params), dns_servers, dns_search,
                   etc_hosts, config_dir, cni_path)


# The poststop hook starts Python only when there is something to release: the modules release the
# network before they delete a container, and an interpreter's start is most of the hook's cost.
HOOK_SHELL = '[ -d "$1" ] || exit 0; shift; exec "$@"'


def hook_command(root, container_id):
    """The poststop hook's argv: /bin/sh, which runs cni.py's copy under the state root alone by this host's
    Python when the container's network directory is there."""
    python = sys.executable or "/usr/bin/python3"
    root = os.path.abspath(root)
    script = os.path.join(root, cni.NETWORK_AREA, "cni.py")
    return ["/bin/sh", "-c", HOOK_SHELL, "sh", cni.container_dir(root, container_id),
            python, "-I", "-S", script, "delete", root, container_id]


def with_network(config, request, root, container_id):
    """CONFIG with what REQUEST adds: the hostname, the namespace, the files, the hook, the annotations."""
    config = with_hostname(config, request.hostname)
    linux = dict(config.get("linux") or {})
    namespaces = [dict(ns) for ns in linux.get("namespaces") or []]
    if request.mode == "none":
        return config
    namespaces = [ns for ns in namespaces if ns.get("type") != "network"]
    if request.mode == "cni":
        namespaces.append({"type": "network", "path": cni.netns_path(os.path.abspath(root), container_id)})
    linux["namespaces"] = namespaces
    config["linux"] = linux
    directory = cni.container_dir(os.path.abspath(root), container_id)
    mounts = [m for m in config.get("mounts") or [] if m.get("destination") not in dict(FILES).values()]
    for name, destination in FILES:
        mounts.append({"destination": destination, "type": "bind", "source": os.path.join(directory, name),
                       "options": ["bind", "ro", "nosuid", "nodev", "noexec"]})
    config["mounts"] = mounts
    hooks = dict(config.get("hooks") or {})
    argv = hook_command(root, container_id)
    hooks["poststop"] = list(hooks.get("poststop") or []) + [{"path": argv[0], "args": argv, "timeout": 300}]
    config["hooks"] = hooks
    annotations = dict(config.get("annotations") or {})
    annotations.update(request.annotations())
    config["annotations"] = annotations
    return config


# --------------------------------------------------------------------------
# attach and release

def _hook_script(root):
    """cni.py's source under the state root (the poststop hook runs it from there), replaced when it changed."""
    source = cni.__loader__.get_source(cni.__name__)
    path = os.path.join(root, cni.NETWORK_AREA, "cni.py")
    try:
        with open(path) as handle:
            if handle.read() == source:
                return
    except OSError:
        pass
    atomicfile.write(path, source, mode=0o600)


def published_elsewhere(root, container_id):
    """[(container id, mapping)] of the ports the other containers of ROOT publish (from their caches)."""
    found = []
    for other, cache in cni.caches(root, exclude=container_id):
        for attachment in cache.get("attachments") or []:
            for mapping in (attachment.get("runtimeConfig") or {}).get("portMappings") or []:
                found.append((other, mapping))
    return found


def cni_args_for(container_id, ip):
    """CNI_ARGS of a container's attachment: its name for dnsname, and IP for host-local when it is pinned."""
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s" % (
        DNS_POD_NAMESPACE, container_id, container_id)
    return args + (";IP=%s" % ip if ip else "")


def attach(root, container_id, request):
    """Make the container's namespace, ADD it to its networks, write its files; on failure undo all of it."""
    attaching = begin_attach(root, container_id, request)
    if attaching is not None:
        attaching.finish()


def begin_attach(root, container_id, request):
    """What must exist before the container is created (its namespace, its files' mount points), with the
    first plugin's ADD started: an Attaching to finish() (or abandon()) once the container is created, or
    None for network none. On failure nothing is left."""
    if request.mode == "none":
        return None
    root = os.path.abspath(root)
    elsewhere = published_elsewhere(root, container_id)
    for other, mapping in elsewhere:
        for mine in request.mappings:
            if ports.overlaps(mine, mapping):
                raise OCIError("publish: host port %d/%s is already published by container %s"
                               % (mine["hostPort"], mine["protocol"], other))
    ports.check_free(request.mappings)
    mappings = ports.assign_free(request.mappings, [mapping for _other, mapping in elsewhere])
    directory = cni.container_dir(root, container_id)
    if os.path.isdir(directory):
        release(root, container_id)  # what a crash left: never attach twice
    os.makedirs(directory, mode=0o700)
    attaching = Attaching(root, container_id, request, mappings)
    try:
        _hook_script(root)
        for name, _destination in FILES:
            _write_in_place(os.path.join(directory, name), "")  # bind-mounted at create, written by finish()
        if request.mode == "cni":
            attaching.begin()
    except BaseException:
        attaching.abandon()
        raise
    return attaching


class Attaching:
    """A container's attachment under way. begin() records the cache, makes the namespace and starts the
    first plugin's ADD; finish() runs the rest of the lists and writes the container's files. The container
    is created between the two (its runtime needs the namespace, not its interfaces), so the slowest plugin
    (bridge's ADD) runs while the container is made; it starts only after finish()."""

    def __init__(self, root, container_id, request, mappings):
        self.root = root
        self.mappings = mappings  # request's, with the host ports chosen (ports.assign_free)
        self.container_id = container_id
        self.request = request
        self.path = cni.netns_path(root, container_id)
        # configDir: where release finds the networks' lists as they are now (bridge.tidy)
        self.cache = {"containerId": container_id, "netns": self.path, "cniPath": request.cni_path,
                      "configDir": request.config_dir, "attachments": []}
        self.planned = []
        self.started = None

    def begin(self):
        for name, network in self.request.networks.items():
            problem = bridge.prepare(self.root, self.container_id, network)
            if problem:
                raise OCIError("network: network %s: bridge %s" % (name, problem))
        cni.write_cache(self.root, self.container_id, self.cache)
        netns.create(self.path)
        for index, (name, network) in enumerate(self.request.networks.items()):
            runtime_config = {"portMappings": self.mappings, "aliases": {name: [self.request.hostname]}}
            self.planned.append(("eth%d" % index, _working_plugins(network, runtime_config),
                                 cni_args_for(self.container_id, self.request.ip if index == 0 else None),
                                 runtime_config))
        self._record(0)
        self.started = self._start(0, 0, None)

    def _record(self, index):
        ifname, network, cni_args, runtime_config = self.planned[index]
        # Recorded before the ADD: a crash in the middle of it leaves what DEL needs.
        self.cache["attachments"].append({"network": network["name"], "ifname": ifname, "config": network,
                                          "cniArgs": cni_args, "runtimeConfig": runtime_config, "result": None})
        cni.write_cache(self.root, self.container_id, self.cache)

    def _start(self, index, plugin_index, prev_result):
        ifname, network, cni_args, runtime_config = self.planned[index]
        try:
            return cni.start("ADD", network["plugins"][plugin_index], network, self.container_id, self.path,
                             ifname, cni_args=cni_args, cni_path=self.request.cni_path, prev_result=prev_result,
                             runtime_config=runtime_config)
        except cni.CNIError as exc:
            raise OCIError("network: %s" % exc)

    def finish(self):
        """The rest of the ADDs and the container's files; on failure everything is undone (OCIError)."""
        try:
            results = []
            for index, (_ifname, network, _cni_args, _runtime_config) in enumerate(self.planned):
                if index:
                    self._record(index)
                result = None
                for plugin_index in range(len(network["plugins"])):
                    started, self.started = self.started or self._start(index, plugin_index, result), None
                    try:
                        result = cni.finish(started)
                    except cni.CNIError as exc:
                        raise OCIError("network: %s" % exc)
                self.cache["attachments"][index]["result"] = result
                cni.write_cache(self.root, self.container_id, self.cache)
                results.append((network, result))
            _write_files(cni.container_dir(self.root, self.container_id), self.request, results)
        except BaseException:
            self.abandon()
            raise

    def abandon(self):
        """Undo what begin() and finish() made (the plugin under way killed first)."""
        if self.started is not None:
            cni.abandon(self.started)
            self.started = None
        try:
            release(self.root, self.container_id)
        except OCIError:
            pass  # the first failure is the one to report; the cache keeps what is left for `absent`


def _working_plugins(network, runtime_config):
    """NETWORK's list without the plugins that would do nothing for this container (IDLE_WITHOUT)."""
    plugins = [plugin for plugin in network["plugins"]
               if plugin.get("type") not in IDLE_WITHOUT or runtime_config.get(IDLE_WITHOUT[plugin["type"]])]
    return dict(network, plugins=plugins)


def _write_files(directory, request, results):
    addresses, servers, search = [], [], []
    for network, result in results:
        for entry in result.get("ips") or []:
            addresses.append(entry["address"].split("/")[0])
        dns = result.get("dns") or {}
        servers.extend(dns.get("nameservers") or [])
        search.extend(dns.get("search") or [])
        settings = conflist.settings_of(network)
        if settings.get("dns") and not dns.get("nameservers"):
            servers.append(settings["gateway"])  # dnsmasq listens on the bridge's address
            search.append(conflist.DNS_DOMAIN)
    host_servers, host_search, host_options = etcfiles.read_host_resolv()
    if request.mode == "cni":
        host_servers = [s for s in host_servers if not etcfiles.is_loopback(s)]  # the host's stub is not ours
    servers = request.dns_servers or servers + [s for s in host_servers if s not in servers]
    search = request.dns_search or search + [s for s in host_search if s not in search]
    texts = {"resolv.conf": etcfiles.resolv_conf(servers, search, host_options),
             "hosts": etcfiles.hosts(request.hostname, addresses, request.etc_hosts),
             "hostname": etcfiles.hostname_file(request.hostname)}
    for name, text in texts.items():
        _write_in_place(os.path.join(directory, name), text)


def _write_in_place(path, text):
    """PATH's content replaced in the same inode: the container's bind mount of it (made at create, before
    the text is known) sees the new text, where a rename would leave it the old file. Written before the
    container starts, so no reader sees it half-written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def release(root, container_id, cni_path=None):
    """DEL every attachment from the cache, unmount and remove the namespace, then what the host keeps of an
    old version of its networks that no one uses any more (bridge.tidy); True when there was any."""
    root = os.path.abspath(root)
    try:
        cache = cni.read_cache(root, container_id) or {}
    except cni.CNIError:
        cache = {}  # cni.release says what is wrong with it
    try:
        released = cni.release(root, container_id, cni_path)
    except (cni.CNIError, OSError) as exc:
        raise OCIError("network: %s" % exc)
    configs = [a.get("config") or {} for a in cache.get("attachments") or [] if isinstance(a, dict)]
    if released and configs and cache.get("configDir"):  # older caches do not say where the lists are
        bridge.tidy(root, configs, bridge.current_lists(cache["configDir"], [c.get("name") for c in configs]))
    return released


def has_attachment(root, container_id):
    return os.path.isdir(cni.container_dir(os.path.abspath(root), container_id))


# --------------------------------------------------------------------------
# facts

def describe(root, container_id):
    """[{network, interface, addresses, mac, gateway, published}] from the container's cache ([] without one)."""
    try:
        cache = cni.read_cache(os.path.abspath(root), container_id)
    except cni.CNIError:
        return []
    found = []
    for attachment in (cache or {}).get("attachments") or []:
        if attachment.get("ifname") == "lo":
            continue
        result = attachment.get("result") or {}
        interfaces = result.get("interfaces") or []
        mine = [i for i, interface in enumerate(interfaces) if interface.get("name") == attachment["ifname"]
                and interface.get("sandbox")]
        ips = [entry for entry in result.get("ips") or [] if "interface" not in entry or entry["interface"] in mine]
        found.append({"network": attachment.get("network"), "interface": attachment.get("ifname"),
                      "addresses": [entry["address"] for entry in ips],
                      "mac": interfaces[mine[0]].get("mac") if mine else None,
                      "gateway": next((entry.get("gateway") for entry in ips if entry.get("gateway")), None),
                      "published": (attachment.get("runtimeConfig") or {}).get("portMappings") or []})
    return found


def users_of(root, name):
    """The ids of ROOT's containers attached to network NAME (from their caches)."""
    return [other for other, cache in cni.caches(os.path.abspath(root))
            if any(a.get("network") == name for a in cache.get("attachments") or [])]
