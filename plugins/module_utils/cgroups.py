# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cgroups: the host's layout, a container's cgroup, linux.resources, and the `cgroup` mount.

One interface for every layout. The layout is read from /proc/self/mountinfo
(which hierarchies are mounted where, with which controllers), /proc/cgroups
and the unified hierarchy's cgroup.controllers, never guessed:
- v1: one hierarchy per controller (or per group of co-mounted ones);
- v2: one unified hierarchy;
- hybrid: v1 hierarchies plus a cgroup2 mount that may hold some controllers.
Each controller is driven where the host has it: its v1 hierarchy when there
is one, else the unified hierarchy. linux.resources becomes a list of file
writes (plan_resources) before anything is written, so the v1 and v2 file
mappings can be checked without touching the host.
"""
import errno
import os
# The C module: the signal module builds enums at import, 3 ms of every command.
import _signal as signal
import time

from ansible_collections.daemonless.oci.plugins.module_utils import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils.paths import ensure_in_root, fd_path

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384

# Where containers without linux.cgroupsPath go, and what a relative path is relative to.
RUNTIME_PARENT = "/ocirt"
FREEZE_WAIT_SECONDS = 10.0
REMOVE_WAIT_SECONDS = 10.0

# Allowed for every container after its own rules, as runc does: the
# standard devices work under a wildcard deny, and mknod of any node is
# allowed (reading or writing one still needs its own rule).
DEFAULT_DEVICE_RULES = (
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},
)


class Hierarchy:
    """One mounted cgroup hierarchy: v1 (with its controllers) or the v2 unified one."""

    def __init__(self, mountpoint, root, version, controllers):
        self.mountpoint = mountpoint
        self.root = root
        self.version = version
        self.controllers = controllers

    @property
    def name(self):
        """The key of this hierarchy: 'cpu,cpuacct', 'systemd', or 'unified'."""
        if self.version == 2:
            return "unified"
        return ",".join(c[len("name="):] if c.startswith("name=") else c for c in self.controllers)

    def __repr__(self):
        return "Hierarchy(%r, v%d, %s)" % (self.mountpoint, self.version, self.controllers)


def _unescape(field):
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def known_controllers():
    """Controller names the kernel has, from /proc/cgroups."""
    with open("/proc/cgroups") as handle:
        return set(line.split()[0] for line in handle if not line.startswith("#"))


def hierarchies(mountinfo="/proc/self/mountinfo"):
    found = []
    controllers_known = None
    seen = set()
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            mountpoint = _unescape(fields[4])
            if fstype == "cgroup":
                if controllers_known is None:
                    controllers_known = known_controllers()
                controllers = [o for o in options.split(",")
                               if o in controllers_known or o.startswith("name=")]
                hierarchy = Hierarchy(mountpoint, _unescape(fields[3]), 1, controllers)
            else:
                hierarchy = Hierarchy(mountpoint, _unescape(fields[3]), 2, [])
            # A hierarchy mounted twice (bind mounts) is still one hierarchy.
            if hierarchy.name not in seen:
                seen.add(hierarchy.name)
                found.append(hierarchy)
    return found


class Layout:
    """The host's cgroup layout: which hierarchy drives each controller."""

    def __init__(self, found, unified_controllers=None):
        self.hierarchies = found
        self.v1 = [h for h in found if h.version == 1]
        self.unified = next((h for h in found if h.version == 2), None)
        if unified_controllers is None and self.unified is not None:
            try:
                with open(os.path.join(self.unified.mountpoint, "cgroup.controllers")) as handle:
                    unified_controllers = handle.read().split()
            except OSError:
                unified_controllers = []
        self.unified_controllers = set(unified_controllers or [])
        if not self.v1:
            self.mode = "v2" if self.unified else "none"
        else:
            self.mode = "hybrid" if self.unified else "v1"

    @classmethod
    def detect(cls):
        return cls(hierarchies())

    def hierarchy_for(self, controller):
        """The hierarchy that drives CONTROLLER, or None when the host lacks it."""
        for hierarchy in self.v1:
            if controller in hierarchy.controllers:
                return hierarchy
        if self.unified is not None and controller in self.unified_controllers:
            return self.unified
        return None

    def describe(self):
        return {
            "mode": self.mode,
            "v1": dict((h.name, h.mountpoint) for h in self.v1),
            "unified": self.unified.mountpoint if self.unified else None,
            "unified_controllers": sorted(self.unified_controllers),
        }


def resolve_path(cgroups_path, container_id):
    """The cgroup path (inside every hierarchy) for linux.cgroupsPath, or the default."""
    if not cgroups_path:
        from ansible_collections.daemonless.oci.plugins.module_utils.state import directory_name
        return RUNTIME_PARENT + "/" + directory_name(container_id)
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        parts = cgroups_path.split(":")
        if len(parts) == 3:
            raise OCIError("linux.cgroupsPath %r: the systemd form slice:prefix:name needs the systemd "
                           "cgroup driver, and no systemd manager is reachable on this host; "
                           "use a path such as /machine/%s" % (cgroups_path, parts[2] or container_id))
    parts = [p for p in cgroups_path.split("/") if p]
    if any(p in (".", "..") for p in parts) or not parts:
        raise OCIError("linux.cgroupsPath %r: must be a path without '.' or '..' components" % cgroups_path)
    if cgroups_path.startswith("/"):
        return "/" + "/".join(parts)
    return RUNTIME_PARENT + "/" + "/".join(parts)


# -- linux.resources -> file writes ---------------------------------------------------

class Write:
    """One planned write: VALUE into FILENAME of CONTROLLER's directory, for FIELD."""

    def __init__(self, controller, filename, value, field):
        self.controller = controller
        self.filename = filename
        self.value = value
        self.field = field

    def __repr__(self):
        return "Write(%s/%s=%r for %s)" % (self.controller, self.filename, self.value, self.field)

    def __eq__(self, other):
        return (self.controller, self.filename, self.value) == (other.controller, other.filename, other.value)


def _int(resources, key, field, minimum=None):
    value = resources.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise OCIError("%s: must be an integer" % field)
    if minimum is not None and value < minimum:
        raise OCIError("%s: must be at least %d (got %d)" % (field, minimum, value))
    return value


def _obj(resources, key, field):
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OCIError("%s: must be an object" % field)
    return value


def _list(resources, key, field):
    value = resources.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise OCIError("%s: must be a list of objects" % field)
    return value


class _Planner:
    def __init__(self, layout):
        self.layout = layout
        self.writes = []

    def version(self, controller, field):
        hierarchy = self.layout.hierarchy_for(controller)
        if hierarchy is None:
            raise OCIError("%s: the host has no %s cgroup controller (layout %s)"
                           % (field, controller, self.layout.mode))
        return hierarchy.version

    def add(self, controller, filename, value, field):
        self.writes.append(Write(controller, filename, str(value), field))


def plan_resources(resources, layout):
    """The file writes that apply linux.resources on LAYOUT (v1 and v2 names differ)."""
    planner = _Planner(layout)
    base = "linux.resources"
    if resources is None:
        resources = {}
    if not isinstance(resources, dict):
        raise OCIError("%s: must be an object" % base)
    _plan_memory(planner, _obj(resources, "memory", base + ".memory"), base + ".memory")
    _plan_cpu(planner, _obj(resources, "cpu", base + ".cpu"), base + ".cpu")
    pids = _obj(resources, "pids", base + ".pids")
    limit = _int(pids, "limit", base + ".pids.limit")
    if limit is not None and limit != 0:
        planner.version("pids", base + ".pids.limit")
        planner.add("pids", "pids.max", limit if limit > 0 else "max", base + ".pids.limit")
    _plan_blockio(planner, _obj(resources, "blockIO", base + ".blockIO"), base + ".blockIO")
    for index, entry in enumerate(_list(resources, "hugepageLimits", base + ".hugepageLimits")):
        field = "%s.hugepageLimits[%d]" % (base, index)
        size = entry.get("pageSize")
        if not isinstance(size, str) or not size or "/" in size or "." in size:
            raise OCIError("%s.pageSize: must be a size such as 2MB" % field)
        value = _int(entry, "limit", field + ".limit", minimum=0)
        if value is None:
            raise OCIError("%s.limit: is required" % field)
        version = planner.version("hugetlb", field)
        planner.add("hugetlb", "hugetlb.%s.%s" % (size, "limit_in_bytes" if version == 1 else "max"),
                    value, field)
    network = _obj(resources, "network", base + ".network")
    class_id = _int(network, "classID", base + ".network.classID", minimum=0)
    if class_id is not None:
        planner.version("net_cls", base + ".network.classID")
        planner.add("net_cls", "net_cls.classid", class_id, base + ".network.classID")
    for index, entry in enumerate(_list(network, "priorities", base + ".network.priorities")):
        field = "%s.network.priorities[%d]" % (base, index)
        planner.version("net_prio", field)
        if not isinstance(entry.get("name"), str):
            raise OCIError("%s.name: must be an interface name" % field)
        planner.add("net_prio", "net_prio.ifpriomap",
                    "%s %d" % (entry["name"], _int(entry, "priority", field + ".priority", 0) or 0), field)
    rdma = _obj(resources, "rdma", base + ".rdma")
    for device in sorted(rdma):
        field = "%s.rdma.%s" % (base, device)
        limits = _obj(rdma, device, field)
        planner.version("rdma", field)
        parts = [device]
        for key, name in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
            value = _int(limits, key, "%s.%s" % (field, key), minimum=0)
            if value is not None:
                parts.append("%s=%d" % (name, value))
        planner.add("rdma", "rdma.max", " ".join(parts), field)
    unified = _obj(resources, "unified", base + ".unified")
    for key in sorted(unified):
        field = "%s.unified.%s" % (base, key)
        if layout.unified is None:
            raise OCIError("%s: the host has no cgroup v2 hierarchy" % field)
        if "/" in key or key.startswith(".") or not isinstance(unified[key], str):
            raise OCIError("%s: must be a cgroup file name with a string value" % field)
        controller = key.split(".", 1)[0]
        if controller not in ("cgroup",) and controller not in layout.unified_controllers:
            raise OCIError("%s: controller %s is not available in the unified hierarchy (it has: %s)"
                           % (field, controller, ", ".join(sorted(layout.unified_controllers)) or "none"))
        planner.writes.append(Write("unified", key, unified[key], field))
    return planner.writes


def _plan_memory(planner, memory, base):
    if not memory:
        return
    limit = _int(memory, "limit", base + ".limit", minimum=-1)
    reservation = _int(memory, "reservation", base + ".reservation", minimum=-1)
    swap = _int(memory, "swap", base + ".swap", minimum=-1)
    kernel = _int(memory, "kernel", base + ".kernel", minimum=-1)
    kernel_tcp = _int(memory, "kernelTCP", base + ".kernelTCP", minimum=-1)
    swappiness = _int(memory, "swappiness", base + ".swappiness", minimum=0)
    disable_oom = memory.get("disableOOMKiller")
    if disable_oom is not None and not isinstance(disable_oom, bool):
        raise OCIError("%s.disableOOMKiller: must be a boolean" % base)
    if swappiness is not None and swappiness > 100:
        raise OCIError("%s.swappiness: must be at most 100 (got %d)" % (base, swappiness))
    if limit is not None and swap is not None and swap != -1 and limit != -1 and swap < limit:
        raise OCIError("%s.swap: %d is below memory.limit %d (swap is memory plus swap)" % (base, swap, limit))
    version = planner.version("memory", base)
    if version == 1:
        if limit is not None:
            planner.add("memory", "memory.limit_in_bytes", limit, base + ".limit")
        if swap is not None:
            planner.add("memory", "memory.memsw.limit_in_bytes", swap, base + ".swap")
        if reservation is not None:
            planner.add("memory", "memory.soft_limit_in_bytes", reservation, base + ".reservation")
        # Kernel memory limits are gone from recent kernels: written only where the file exists.
        if kernel is not None:
            planner.add("memory", "?memory.kmem.limit_in_bytes", kernel, base + ".kernel")
        if kernel_tcp is not None:
            planner.add("memory", "?memory.kmem.tcp.limit_in_bytes", kernel_tcp, base + ".kernelTCP")
        if swappiness is not None:
            planner.add("memory", "memory.swappiness", swappiness, base + ".swappiness")
        if disable_oom:
            planner.add("memory", "memory.oom_control", 1, base + ".disableOOMKiller")
        return
    if limit is not None:
        planner.add("memory", "memory.max", "max" if limit == -1 else limit, base + ".limit")
    if reservation is not None:
        planner.add("memory", "memory.low", "max" if reservation == -1 else reservation, base + ".reservation")
    if swap is not None:
        # v1's swap is memory+swap; v2's memory.swap.max is swap alone.
        if swap == -1:
            value = "max"
        elif limit is None or limit == -1:
            raise OCIError("%s.swap: on cgroup v2 a swap limit needs memory.limit too" % base)
        else:
            value = swap - limit
        planner.add("memory", "memory.swap.max", value, base + ".swap")
    if swappiness is not None:
        raise OCIError("%s.swappiness: cgroup v2 has no per-cgroup swappiness" % base)
    if disable_oom:
        raise OCIError("%s.disableOOMKiller: cgroup v2 cannot disable the OOM killer" % base)


def _plan_cpu(planner, cpu, base):
    if not cpu:
        return
    shares = _int(cpu, "shares", base + ".shares", minimum=0)
    quota = _int(cpu, "quota", base + ".quota", minimum=-1)
    period = _int(cpu, "period", base + ".period", minimum=0)
    burst = _int(cpu, "burst", base + ".burst", minimum=0)
    rt_runtime = _int(cpu, "realtimeRuntime", base + ".realtimeRuntime", minimum=-1)
    rt_period = _int(cpu, "realtimePeriod", base + ".realtimePeriod", minimum=0)
    idle = _int(cpu, "idle", base + ".idle", minimum=0)
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise OCIError("%s.%s: must be a string such as 0-1,3" % (base, key))
            planner.version("cpuset", base + "." + key)
            planner.add("cpuset", "cpuset." + key, value, base + "." + key)
    if all(v is None for v in (shares, quota, period, burst, rt_runtime, rt_period, idle)):
        return
    version = planner.version("cpu", base)
    if version == 1:
        if shares:
            planner.add("cpu", "cpu.shares", shares, base + ".shares")
        if period:
            planner.add("cpu", "cpu.cfs_period_us", period, base + ".period")
        if quota is not None and quota != 0:
            planner.add("cpu", "cpu.cfs_quota_us", quota, base + ".quota")
        if burst is not None:
            planner.add("cpu", "cpu.cfs_burst_us", burst, base + ".burst")
        if rt_period:
            planner.add("cpu", "cpu.rt_period_us", rt_period, base + ".realtimePeriod")
        if rt_runtime is not None and rt_runtime != 0:
            planner.add("cpu", "cpu.rt_runtime_us", rt_runtime, base + ".realtimeRuntime")
    else:
        if shares:
            # The runtime spec's mapping of shares [2-262144] to weight [1-10000].
            planner.add("cpu", "cpu.weight", 1 + ((max(2, min(shares, 262144)) - 2) * 9999) // 262142,
                        base + ".shares")
        if quota or period:
            planner.add("cpu", "cpu.max", "%s %d" % ("max" if not quota or quota < 0 else quota,
                                                     period or 100000), base + ".quota")
        if burst is not None:
            planner.add("cpu", "cpu.max.burst", burst, base + ".burst")
        if rt_runtime or rt_period:
            raise OCIError("%s.realtimeRuntime: cgroup v2 has no realtime CPU limits" % base)
    if idle is not None:
        planner.add("cpu", "cpu.idle", idle, base + ".idle")


def _device_numbers(entry, field):
    major = _int(entry, "major", field + ".major", minimum=0)
    minor = _int(entry, "minor", field + ".minor", minimum=0)
    if major is None or minor is None:
        raise OCIError("%s: major and minor are required" % field)
    return major, minor


def _plan_blockio(planner, blockio, base):
    if not blockio:
        return
    version = planner.version("blkio" if planner.layout.hierarchy_for("blkio") else "io", base)
    controller = "blkio" if version == 1 else "io"
    weight = _int(blockio, "weight", base + ".weight", minimum=0)
    leaf_weight = _int(blockio, "leafWeight", base + ".leafWeight", minimum=0)
    for value, field in ((weight, base + ".weight"), (leaf_weight, base + ".leafWeight")):
        if value is not None and not 10 <= value <= 1000:
            raise OCIError("%s: must be between 10 and 1000 (got %d)" % (field, value))
    if version == 1:
        if weight is not None:
            # CFQ's blkio.weight, or BFQ's blkio.bfq.weight on kernels without CFQ.
            planner.add(controller, "blkio.weight|blkio.bfq.weight", weight, base + ".weight")
        if leaf_weight is not None:
            planner.add(controller, "blkio.leaf_weight", leaf_weight, base + ".leafWeight")
    else:
        if weight is not None:
            # BFQ takes the weight as it is (1-1000); io.weight wants the spec's 1-10000 mapping.
            planner.add(controller, "io.bfq.weight|io.weight", "%d|%d" % (weight, 1 + (weight - 10) * 9999 // 990),
                        base + ".weight")
        if leaf_weight is not None:
            raise OCIError("%s.leafWeight: cgroup v2 has no leaf weight" % base)
    for index, entry in enumerate(_list(blockio, "weightDevice", base + ".weightDevice")):
        field = "%s.weightDevice[%d]" % (base, index)
        major, minor = _device_numbers(entry, field)
        device_weight = _int(entry, "weight", field + ".weight", minimum=10)
        if device_weight is not None:
            if version == 1:
                planner.add(controller, "blkio.weight_device|blkio.bfq.weight_device",
                            "%d:%d %d" % (major, minor, device_weight), field)
            else:
                planner.add(controller, "io.bfq.weight|io.weight", "%d:%d %d|%d:%d %d"
                            % (major, minor, device_weight, major, minor,
                               1 + (device_weight - 10) * 9999 // 990), field)
    throttles = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
                 ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
                 ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
                 ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"))
    for key, v1_file, v2_key in throttles:
        for index, entry in enumerate(_list(blockio, key, "%s.%s" % (base, key))):
            field = "%s.%s[%d]" % (base, key, index)
            major, minor = _device_numbers(entry, field)
            rate = _int(entry, "rate", field + ".rate", minimum=0)
            if rate is None:
                raise OCIError("%s.rate: is required" % field)
            if version == 1:
                planner.add(controller, v1_file, "%d:%d %d" % (major, minor, rate), field)
            else:
                planner.add(controller, "io.max", "%d:%d %s=%s" % (major, minor, v2_key, rate or "max"), field)


def _shown(value):
    """A refused value for a message: strings as they are (cut), others by type (a nested value's repr may not end)."""
    return repr(value[:64]) if isinstance(value, str) else "a %s" % type(value).__name__


def _device_number(value):
    return "*" if value is None or value < 0 else str(value)


def plan_devices(rules, layout):
    """v1 devices.allow/deny writes for linux.resources.devices, then the default allows."""
    base = "linux.resources.devices"
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        raise OCIError("%s: must be a list" % base)
    checked = []
    for index, rule in enumerate(rules):
        field = "%s[%d]" % (base, index)
        if not isinstance(rule, dict):
            raise OCIError("%s: must be an object" % field)
        if not isinstance(rule.get("allow"), bool):
            raise OCIError("%s.allow: is required and must be a boolean" % field)
        kind = rule.get("type") or "a"
        if not isinstance(kind, str) or kind not in ("a", "c", "b"):
            raise OCIError("%s.type: must be one of a, c, b, not %s" % (field, _shown(kind)))
        access = rule.get("access") or "rwm"
        if not isinstance(access, str) or not access or set(access) - set("rwm"):
            raise OCIError("%s.access: must be made of r, w and m, not %s" % (field, _shown(access)))
        for key in ("major", "minor"):
            _int(rule, key, "%s.%s" % (field, key), minimum=-1)
        checked.append(dict(rule, type=kind, access=access, field=field))
    if not checked and layout.hierarchy_for("devices") is None:
        return []
    hierarchy = layout.hierarchy_for("devices")
    if hierarchy is None or hierarchy.version != 1:
        raise OCIError("%s: device rules need the v1 devices controller; this host (layout %s) would "
                       "need a cgroup v2 eBPF device program, which this runtime does not load yet, and "
                       "it will not silently allow every device" % (base, layout.mode))
    writes = []
    for rule in checked + [dict(r, field="default device rules") for r in DEFAULT_DEVICE_RULES]:
        if rule["type"] == "a":
            entry = "a"
        else:
            entry = "%s %s:%s %s" % (rule["type"], _device_number(rule.get("major")),
                                     _device_number(rule.get("minor")), rule["access"])
        writes.append(Write("devices", "devices.allow" if rule["allow"] else "devices.deny", entry,
                            rule["field"]))
    return writes


# -- a container's cgroup ---------------------------------------------------------------

def _write_file(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode() if isinstance(value, str) else value)
    finally:
        os.close(fd)


def _read_file(path):
    with open(path) as handle:
        return handle.read()


class Cgroup:
    """A container's cgroup: one directory per hierarchy, and the ones this runtime made."""

    def __init__(self, dirs, created, mode):
        self.dirs = dirs          # {hierarchy name: absolute directory}
        self.created = created    # directories made for this container, parents first
        self.mode = mode

    def to_record(self):
        return {"dirs": self.dirs, "created": self.created, "mode": self.mode}

    @classmethod
    def from_record(cls, record):
        if not record:
            return None
        return cls(record["dirs"], record.get("created", []), record.get("mode"))

    @classmethod
    def create(cls, layout, path, owned):
        """Make PATH in every hierarchy. OWNED: the path is the runtime's default, so an
        existing directory must be empty and becomes this container's; a given
        cgroupsPath may be joined as it is and is then left in place at delete."""
        dirs = {}
        created = []
        try:
            for hierarchy in layout.hierarchies:
                directory = os.path.join(hierarchy.mountpoint, path.lstrip("/"))
                # The runtime's parent is shared by every container: never removed.
                shared_parent = os.path.join(hierarchy.mountpoint, RUNTIME_PARENT.lstrip("/"))
                made = [d for d in _makedirs(hierarchy.mountpoint, path) if d != shared_parent]
                if owned and not made and _read_file(os.path.join(directory, "cgroup.procs")).strip():
                    raise OCIError("cgroup %s: already exists with processes in it" % directory)
                if owned and directory not in made:
                    made.append(directory)
                created.extend(made)
                dirs[hierarchy.name] = directory
                if "cpuset" in hierarchy.controllers:
                    _init_cpuset(hierarchy.mountpoint, path)
        except OSError as exc:
            cls({}, created, layout.mode).destroy()
            raise OCIError("cgroup %s: %s" % (getattr(exc, "filename", None) or path, exc.strerror))
        except OCIError:
            cls({}, created, layout.mode).destroy()
            raise
        return cls(dirs, created, layout.mode)

    @staticmethod
    def missing_dirs(layout, path):
        """The directories Cgroup.create(layout, path) would make now (not the shared runtime parent)."""
        missing = []
        for hierarchy in layout.hierarchies:
            current = hierarchy.mountpoint
            shared_parent = os.path.join(hierarchy.mountpoint, RUNTIME_PARENT.lstrip("/"))
            for part in [p for p in path.split("/") if p]:
                current = os.path.join(current, part)
                if current != shared_parent and not os.path.isdir(current):
                    missing.append(current)
        return missing

    @classmethod
    def recover(cls, layout, path):
        """The cgroup at PATH as far as it exists, all of it this runtime's to remove: for a
        create that died before it recorded what it made, or a state file that cannot be read."""
        dirs = {}
        for hierarchy in layout.hierarchies:
            directory = os.path.join(hierarchy.mountpoint, path.lstrip("/"))
            if os.path.isdir(directory):
                dirs[hierarchy.name] = directory
        return cls(dirs, list(dirs.values()), layout.mode)

    def directory_for(self, controller, layout):
        hierarchy = layout.hierarchy_for(controller)
        if hierarchy is None:
            return None
        return self.dirs.get(hierarchy.name)

    def add_process(self, pid):
        """Move PID into every hierarchy's directory (before it runs any of the container's code)."""
        for name, directory in self.dirs.items():
            try:
                _write_file(os.path.join(directory, "cgroup.procs"), str(pid))
            except OSError as exc:
                raise OCIError("cgroup %s: cannot add process %d: %s" % (directory, pid, exc.strerror))

    def apply(self, writes, layout):
        """Write each planned file; a write refused for ordering (memory+swap) is retried once at the end."""
        pending = list(writes)
        self._enable_unified_controllers(writes, layout)
        for attempt in (0, 1):
            failed = []
            for write in pending:
                if write.controller == "unified":
                    directory = self.dirs.get("unified")
                else:
                    directory = self.directory_for(write.controller, layout)
                if directory is None:
                    raise OCIError("%s: the host has no %s cgroup controller" % (write.field, write.controller))
                try:
                    self._write(directory, write)
                except OSError as exc:
                    if attempt == 0 and exc.errno in (errno.EINVAL, errno.EBUSY):
                        failed.append(write)
                        continue
                    target = os.path.join(directory, write.filename.lstrip("?"))
                    raise OCIError("%s: cannot write %r to %s: %s" % (write.field, write.value, target, exc.strerror))
            pending = failed
            if not pending:
                return

    @staticmethod
    def _write(directory, write):
        """Write to the first of the alternative files ("a|b") that exists; "?" marks an optional file.

        A value "x|y" gives each alternative its own value (BFQ's weight is unconverted).
        """
        names = write.filename.lstrip("?").split("|")
        values = write.value.split("|") if "|" in write.value else [write.value] * len(names)
        optional = write.filename.startswith("?")
        for name, value in zip(names, values):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                _write_file(path, value)
                return
        if optional:
            return
        raise OSError(errno.ENOENT, "the kernel has no %s here" % " or ".join(names), os.path.join(directory, names[0]))

    def _enable_unified_controllers(self, writes, layout):
        """v2: a controller is usable in a cgroup only once every ancestor delegates it."""
        wanted = set(w.controller for w in writes if layout.hierarchy_for(w.controller) is layout.unified)
        # linux.resources.unified keys name their controller in the file name (pids.max -> pids).
        wanted.update(w.filename.split(".", 1)[0] for w in writes
                      if w.controller == "unified" and w.filename.split(".", 1)[0] in layout.unified_controllers)
        directory = self.dirs.get("unified")
        if not directory or not wanted:
            return
        mountpoint = layout.unified.mountpoint
        relative = os.path.relpath(directory, mountpoint)
        current = mountpoint
        for part in [""] + relative.split("/")[:-1]:
            current = os.path.join(current, part) if part else current
            try:
                _write_file(os.path.join(current, "cgroup.subtree_control"),
                            " ".join("+" + c for c in sorted(wanted)))
            except OSError as exc:
                raise OCIError("cgroup %s: cannot enable %s controllers: %s"
                               % (current, ", ".join(sorted(wanted)), exc.strerror))

    def oom_file(self, layout):
        """The file whose oom_kill counter tells whether the OOM killer struck, or None."""
        directory = self.directory_for("memory", layout)
        if directory is None:
            return None
        hierarchy = layout.hierarchy_for("memory")
        return os.path.join(directory, "memory.oom_control" if hierarchy.version == 1 else "memory.events")

    def procs(self):
        """Pids in the container's cgroup (from the first hierarchy that can say)."""
        for name in ("pids", "freezer", "memory", "unified", "systemd"):
            directory = self.dirs.get(name)
            if directory:
                try:
                    return [int(p) for p in _read_file(os.path.join(directory, "cgroup.procs")).split()]
                except OSError:
                    continue
        for directory in self.dirs.values():
            try:
                return [int(p) for p in _read_file(os.path.join(directory, "cgroup.procs")).split()]
            except OSError:
                continue
        return []

    def _freezer(self):
        if self.dirs.get("freezer"):
            return ("v1", os.path.join(self.dirs["freezer"], "freezer.state"))
        unified = self.dirs.get("unified")
        if unified and os.path.exists(os.path.join(unified, "cgroup.freeze")):
            return ("v2", unified)
        return (None, None)

    def is_frozen(self):
        kind, path = self._freezer()
        try:
            if kind == "v1":
                return _read_file(path).strip() == "FROZEN"
            if kind == "v2":
                return _read_file(os.path.join(path, "cgroup.freeze")).strip() == "1"
        except OSError:
            return False
        return False

    def freeze(self, frozen=True):
        kind, path = self._freezer()
        if kind is None:
            raise OCIError("the host has no freezer (v1 freezer controller or v2 cgroup.freeze)")
        deadline = time.monotonic() + FREEZE_WAIT_SECONDS
        if kind == "v1":
            target = "FROZEN" if frozen else "THAWED"
            while True:
                _write_file(path, target)
                if _read_file(path).strip() == target:
                    return
                if time.monotonic() > deadline:
                    raise OCIError("freezer %s did not reach %s" % (path, target))
                time.sleep(0.001)
        _write_file(os.path.join(path, "cgroup.freeze"), "1" if frozen else "0")
        while True:
            events = _read_file(os.path.join(path, "cgroup.events"))
            if ("frozen %d" % (1 if frozen else 0)) in events:
                return
            if time.monotonic() > deadline:
                raise OCIError("cgroup %s did not %s" % (path, "freeze" if frozen else "thaw"))
            time.sleep(0.001)

    def signal_all(self, signum):
        """Send SIGNUM to every process; frozen meanwhile, so none can fork past it."""
        kind = self._freezer()[0]
        frozen_before = self.is_frozen()
        if kind and not frozen_before:
            self.freeze(True)
        try:
            for pid in self.procs():
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        finally:
            # A frozen process dies only once thawed: after SIGKILL thaw even a paused container.
            if kind and (not frozen_before or signum == signal.SIGKILL):
                self.freeze(False)

    def destroy(self):
        """Remove the directories this runtime made, innermost first (waiting, bounded, for exits)."""
        errors = []
        for directory in sorted(set(self.created), key=len, reverse=True):
            deadline = time.monotonic() + REMOVE_WAIT_SECONDS
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.005)
                        continue
                    if exc.errno == errno.ENOTEMPTY:
                        break  # another container's cgroup lives below it
                    errors.append("%s: %s" % (directory, exc.strerror))
                    break
        if errors:
            raise OCIError("cannot remove cgroups: %s" % "; ".join(errors))


def _makedirs(mountpoint, path):
    """mkdir -p PATH under MOUNTPOINT; return the directories made."""
    made = []
    current = mountpoint
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
            made.append(current)
        except FileExistsError:
            pass
    return made


def _init_cpuset(mountpoint, path):
    """A new v1 cpuset starts empty and refuses processes: copy cpus and mems down from its parent."""
    current = mountpoint
    for part in [p for p in path.split("/") if p]:
        parent, current = current, os.path.join(current, part)
        for name in ("cpuset.cpus", "cpuset.mems"):
            target = os.path.join(current, name)
            if not _read_file(target).strip():
                _write_file(target, _read_file(os.path.join(parent, name)).strip() or "\n")


# -- the `cgroup` mount inside a container -------------------------------------------------

def mount_cgroup_fs(rootfd, destination, flags, cgroup_dirs):
    """A `cgroup` mount: the container's own cgroups, read-only when FLAGS say so.

    CGROUP_DIRS is the container's Cgroup.dirs ({hierarchy name: host
    directory}) as the runtime made them, not what /proc/self/cgroup says
    from inside: from a new cgroup namespace every path reads "/", and the
    bind would expose the host's whole tree.

    v1 and hybrid: a tmpfs at DESTINATION with one bind per hierarchy, plus
    symlinks for the parts of combined names (cpu -> cpu,cpuacct). Pure v2:
    a bind of the container's own cgroup. Returns the remounts to make
    read-only at the end, as (container path, flags).
    """
    found = hierarchies()
    readonly = flags & MS_RDONLY
    keep = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    final_flags = keep | (MS_RDONLY if readonly else 0)
    if all(h.version == 2 for h in found):
        source = cgroup_dirs.get(found[0].name) if found else None
        target = ensure_in_root(rootfd, destination)
        try:
            syscalls.mount(source, fd_path(target), None, MS_BIND | MS_REC)
        finally:
            os.close(target)
        return [(destination, final_flags)]
    target = ensure_in_root(rootfd, destination)
    try:
        syscalls.mount("tmpfs", fd_path(target), "tmpfs", keep, "mode=755")
    finally:
        os.close(target)
    deferred = [(destination, final_flags)]
    for hierarchy in found:
        source = cgroup_dirs.get(hierarchy.name)
        if source is None or not os.path.isdir(source):
            continue
        sub = destination.rstrip("/") + "/" + hierarchy.name
        target = ensure_in_root(rootfd, sub)
        try:
            syscalls.mount(source, fd_path(target), None, MS_BIND | MS_REC)
        finally:
            os.close(target)
        deferred.append((sub, final_flags))
        parts = hierarchy.name.split(",")
        if len(parts) > 1:
            parent = ensure_in_root(rootfd, destination)
            try:
                for part in parts:
                    try:
                        os.symlink(hierarchy.name, part, dir_fd=parent)
                    except FileExistsError:
                        pass
            finally:
                os.close(parent)
    # Deferred remounts run innermost first so the tmpfs goes read-only last.
    deferred.reverse()
    return deferred
