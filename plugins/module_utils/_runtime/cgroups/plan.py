# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""linux.resources and linux.resources.devices as file writes, planned before anything is written.

plan_resources and plan_devices turn the config into a list of Write (which
controller's file gets which value, for which field), so the v1 and v2 file
mappings are checked, and unit-tested, without touching the host. Applying
the list is cgroup.Cgroup.apply. On cgroup v2 the device rules become one
device_program.DeviceProgram in that list, installed instead of written.
"""
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

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


# -- linux.resources -> file writes ---------------------------------------------------

# cgroup v2 core files that move, freeze, kill or restructure the cgroup: written by the
# runtime (create, pause, kill, delete), never from linux.resources.unified.
RUNTIME_OWNED_FILES = frozenset(("cgroup.procs", "cgroup.threads", "cgroup.freeze", "cgroup.kill",
                                 "cgroup.subtree_control", "cgroup.type"))


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


def plan_resources(resources, layout, current=None):
    """The file writes that apply linux.resources on LAYOUT (v1 and v2 names differ).

    CURRENT, for an update, is the linux.resources the container has now: a
    v2 file that holds two fields (cpu.max: quota and period; memory.swap.max:
    swap less the limit) takes the one the update leaves out from it, as runc
    does when it merges an update into the container's config.
    """
    planner = _Planner(layout)
    base = "linux.resources"
    if resources is None:
        resources = {}
    if not isinstance(resources, dict):
        raise OCIError("%s: must be an object" % base)
    current = current if isinstance(current, dict) else {}
    _plan_memory(planner, _obj(resources, "memory", base + ".memory"), base + ".memory",
                 current.get("memory") if isinstance(current.get("memory"), dict) else {})
    _plan_cpu(planner, _obj(resources, "cpu", base + ".cpu"), base + ".cpu",
              current.get("cpu") if isinstance(current.get("cpu"), dict) else {})
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
        if version == 2:
            # Pages reserved at mmap count against their own limit (Linux 5.7): the same one.
            planner.add("hugetlb", "?hugetlb.%s.rsvd.max" % size, value, field)
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
        controller, dot, name = key.partition(".")
        if "/" in key or not controller or not dot or not name or not isinstance(unified[key], str):
            raise OCIError("%s: must be a cgroup file name CONTROLLER.NAME with a string value" % field)
        if key in RUNTIME_OWNED_FILES:
            raise OCIError("%s: is not a resource limit; the runtime itself drives that file" % field)
        if controller not in ("cgroup",) and controller not in layout.unified_controllers:
            raise OCIError("%s: controller %s is not available in the unified hierarchy (it has: %s)"
                           % (field, controller, ", ".join(sorted(layout.unified_controllers)) or "none"))
        planner.writes.append(Write("unified", key, unified[key], field))
    return planner.writes


def _plan_memory(planner, memory, base, current):
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
        # Kernel memory limits are gone from recent kernels: written only where the file exists ("?").
        for value, name, field in ((limit, "memory.limit_in_bytes", ".limit"),
                                   (swap, "memory.memsw.limit_in_bytes", ".swap"),
                                   (reservation, "memory.soft_limit_in_bytes", ".reservation"),
                                   (kernel, "?memory.kmem.limit_in_bytes", ".kernel"),
                                   (kernel_tcp, "?memory.kmem.tcp.limit_in_bytes", ".kernelTCP"),
                                   (swappiness, "memory.swappiness", ".swappiness")):
            if value is not None:
                planner.add("memory", name, value, base + field)
        if disable_oom:
            planner.add("memory", "memory.oom_control", 1, base + ".disableOOMKiller")
        return
    # runc's v2 values: 0 leaves a limit as it is, -1 is "max".
    if limit:
        planner.add("memory", "memory.max", "max" if limit == -1 else limit, base + ".limit")
    if reservation:
        planner.add("memory", "memory.low", "max" if reservation == -1 else reservation, base + ".reservation")
    swap_max = _swap_max(limit, swap, current, base)
    if swap_max is not None:
        # Without swap accounting the file is missing: "max" and "0" then hold already.
        planner.add("memory", "?memory.swap.max" if swap_max in ("max", 0) else "memory.swap.max", swap_max,
                    base + ".swap")
    if swappiness is not None:
        raise OCIError("%s.swappiness: cgroup v2 has no per-cgroup swappiness" % base)
    if disable_oom:
        raise OCIError("%s.disableOOMKiller: cgroup v2 cannot disable the OOM killer" % base)


def _swap_max(limit, swap, current, base):
    """memory.swap.max for the spec's swap (memory plus swap, as v1 had it): runc's conversion
    (ConvertMemorySwapToCgroupV2Value), the limit taken from CURRENT when an update leaves it out."""
    if not swap and limit == -1:
        return "max"  # unlimited memory and no swap given: both unlimited, as on v1
    if swap == -1:
        return "max"
    if not swap:
        return None
    if limit is None:
        limit = current.get("limit") if isinstance(current.get("limit"), int) else None
    if limit == -1:
        return swap  # no memory limit to take out of it
    if not limit:
        raise OCIError("%s.swap: on cgroup v2 a swap limit needs memory.limit too (swap is memory plus swap)"
                       % base)
    if swap < limit:
        raise OCIError("%s.swap: %d is below memory.limit %d (swap is memory plus swap)" % (base, swap, limit))
    return swap - limit


def _plan_cpu(planner, cpu, base, current):
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
            # One file holds both: the one left out keeps its current value (period: 100000, the kernel's default).
            if quota is None:
                quota = current.get("quota") if isinstance(current.get("quota"), int) else None
            if not period:
                period = current.get("period") if isinstance(current.get("period"), int) else None
            planner.add("cpu", "cpu.max", "%s %d" % ("max" if not quota or quota < 0 else quota,
                                                     period or 100000), base + (".quota" if quota else ".period"))
        if burst is not None:
            planner.add("cpu", "cpu.max.burst", burst, base + ".burst")
        if rt_runtime or rt_period:
            raise OCIError("%s.%s: cgroup v2 has no realtime CPU limits"
                           % (base, "realtimeRuntime" if rt_runtime else "realtimePeriod"))
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
    """linux.resources.devices, then the default allows: devices.allow/deny writes where the
    host has the v1 devices controller, else one device program for the unified hierarchy."""
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
    every = checked + [dict(r, field="default device rules") for r in DEFAULT_DEVICE_RULES]
    hierarchy = layout.hierarchy_for("devices")
    if hierarchy is None or hierarchy.version != 1:
        if layout.unified is not None:
            # Only hosts without the v1 controller pay for the compiler and bpf(2).
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import device_program
            return [device_program.plan(every)]
        if not checked:
            return []
        raise OCIError("%s: this host has neither the v1 devices controller nor a cgroup v2 hierarchy to "
                       "attach a device program to (layout %s), and the rules will not be silently "
                       "ignored" % (base, layout.mode))
    writes = []
    for rule in every:
        if rule["type"] == "a":
            entry = "a"
        else:
            entry = "%s %s:%s %s" % (rule["type"], _device_number(rule.get("major")),
                                     _device_number(rule.get("minor")), rule["access"])
        writes.append(Write("devices", "devices.allow" if rule["allow"] else "devices.deny", entry,
                            rule["field"]))
    return writes
