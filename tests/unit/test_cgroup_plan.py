"""cgroups without containers: plan_resources, plan_devices, resolve_path, and the v2 backend.

plan_resources and plan_devices turn linux.resources into file writes before
anything touches the host, so the v1 and v2 file mappings are checked here
on layouts built by hand (Layout([Hierarchy(...)], unified_controllers=[...])).
Every rejected input must raise OCIError naming the field at fault.

The v2 backend (Cgroup.create / apply / destroy) is then driven for real
against a plain temporary directory shaped like a cgroup2 mount. Unlike a
cgroup filesystem, a plain directory does not grow interface files by
itself, so each test creates in every new directory the files the kernel
would provide, right after Cgroup.create returns.

Expected values follow the OCI runtime specification and runc.
"""
import os
import signal
import sys

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import RUNTIME_PARENT
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import cgroup as cgroup_module
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.cgroup import Cgroup
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Hierarchy, Layout, resolve_path, systemd_scope
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.plan import Write, plan_devices, plan_resources
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import device_program
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

MB = 1024 * 1024

# The test host's shape: one v1 hierarchy per controller, and a cgroup2 mount
# whose cgroup.controllers lists only hugetlb.
HOST_V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd")
PURE_V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")


def v1_layout(extra=(), unified=True, unified_controllers=("hugetlb",)):
    """A v1 (hybrid when UNIFIED) layout: HOST_V1 plus EXTRA v1 controllers."""
    found = []
    for controller in HOST_V1 + tuple(extra):
        name = controller[len("name="):] if controller.startswith("name=") else controller
        found.append(Hierarchy("/sys/fs/cgroup/" + name, "/", 1, [controller]))
    if unified:
        found.append(Hierarchy("/sys/fs/cgroup/unified", "/", 2, []))
        return Layout(found, unified_controllers=list(unified_controllers))
    return Layout(found, unified_controllers=[])


def v2_layout(controllers=PURE_V2_CONTROLLERS, mountpoint="/sys/fs/cgroup"):
    return Layout([Hierarchy(mountpoint, "/", 2, [])], unified_controllers=list(controllers))


def triples(writes):
    return [(w.controller, w.filename, w.value) for w in writes]


def plan(resources, layout):
    return triples(plan_resources(resources, layout))


def value_of(writes, filename):
    """The value planned for FILENAME (one of a write's `a|b` alternatives counts; a value
    `x|y` gives each alternative its own)."""
    found = [w for w in writes if filename in w[1].lstrip("?").split("|")]
    assert len(found) == 1, "expected one write of %s, got %s" % (filename, writes)
    names = found[0][1].lstrip("?").split("|")
    values = found[0][2].split("|")
    return values[names.index(filename)] if len(values) == len(names) else found[0][2]


def expect_error(fn, *needles):
    with pytest.raises(OCIError) as info:
        fn()
    message = str(info.value)
    for needle in needles:
        assert needle in message, "%r not in error %r" % (needle, message)
    return message


# ------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------

def test_layout_modes_and_controller_routing():
    hybrid = v1_layout()
    assert hybrid.mode == "hybrid"
    assert hybrid.hierarchy_for("memory").mountpoint == "/sys/fs/cgroup/memory"
    # hugetlb has no v1 hierarchy here: the unified one drives it.
    assert hybrid.hierarchy_for("hugetlb") is hybrid.unified
    assert hybrid.hierarchy_for("net_cls") is None
    assert hybrid.hierarchy_for("rdma") is None
    assert v1_layout(unified=False).mode == "v1"
    pure = v2_layout()
    assert pure.mode == "v2"
    assert pure.hierarchy_for("memory") is pure.unified
    assert pure.hierarchy_for("devices") is None


def test_systemd_named_hierarchy_is_keyed_without_name_prefix():
    layout = v1_layout()
    assert "systemd" in [h.name for h in layout.v1]
    assert layout.unified.name == "unified"


# ------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------

def test_memory_v1_files():
    writes = plan({"memory": {"limit": 64 * MB, "reservation": 32 * MB, "swap": 128 * MB,
                              "swappiness": 10, "disableOOMKiller": True}}, v1_layout())
    assert all(w[0] == "memory" for w in writes)
    assert value_of(writes, "memory.limit_in_bytes") == str(64 * MB)
    assert value_of(writes, "memory.soft_limit_in_bytes") == str(32 * MB)
    # v1's memsw is memory plus swap: the spec's value as it is.
    assert value_of(writes, "memory.memsw.limit_in_bytes") == str(128 * MB)
    assert value_of(writes, "memory.swappiness") == "10"
    assert value_of(writes, "memory.oom_control") == "1"
    assert len(writes) == 5


def test_memory_v1_unlimited_is_minus_one():
    writes = plan({"memory": {"limit": -1, "swap": -1}}, v1_layout())
    assert value_of(writes, "memory.limit_in_bytes") == "-1"
    assert value_of(writes, "memory.memsw.limit_in_bytes") == "-1"


def test_memory_v2_files_and_swap_is_swap_alone():
    writes = plan({"memory": {"limit": 64 * MB, "reservation": 32 * MB, "swap": 96 * MB}}, v2_layout())
    assert value_of(writes, "memory.max") == str(64 * MB)
    assert value_of(writes, "memory.low") == str(32 * MB)
    # v2's memory.swap.max is swap alone: (memory+swap) - memory.
    assert value_of(writes, "memory.swap.max") == str(32 * MB)
    assert len(writes) == 3


def test_memory_v2_equal_swap_and_limit_means_no_swap():
    writes = plan({"memory": {"limit": 64 * MB, "swap": 64 * MB}}, v2_layout())
    assert value_of(writes, "memory.swap.max") == "0"


def test_memory_v2_minus_one_is_max():
    writes = plan({"memory": {"limit": -1, "reservation": -1, "swap": -1}}, v2_layout())
    assert value_of(writes, "memory.max") == "max"
    assert value_of(writes, "memory.low") == "max"
    assert value_of(writes, "memory.swap.max") == "max"


def test_memory_v2_swap_without_limit_is_refused():
    expect_error(lambda: plan_resources({"memory": {"swap": 64 * MB}}, v2_layout()),
                 "linux.resources.memory.swap")


def test_memory_v2_swappiness_is_refused_naming_the_field():
    expect_error(lambda: plan_resources({"memory": {"swappiness": 10}}, v2_layout()),
                 "linux.resources.memory.swappiness")


def test_memory_v2_disable_oom_killer_is_refused_naming_the_field():
    expect_error(lambda: plan_resources({"memory": {"disableOOMKiller": True}}, v2_layout()),
                 "linux.resources.memory.disableOOMKiller")


def test_memory_swap_below_limit_is_refused():
    expect_error(lambda: plan_resources({"memory": {"limit": 64 * MB, "swap": 32 * MB}}, v1_layout()),
                 "linux.resources.memory.swap")


# ------------------------------------------------------------------------------------
# cpu, cpuset
# ------------------------------------------------------------------------------------

def test_cpu_v1_files():
    writes = plan({"cpu": {"shares": 512, "quota": 50000, "period": 100000}}, v1_layout())
    assert all(w[0] == "cpu" for w in writes)
    assert value_of(writes, "cpu.shares") == "512"
    assert value_of(writes, "cpu.cfs_quota_us") == "50000"
    assert value_of(writes, "cpu.cfs_period_us") == "100000"
    assert len(writes) == 3


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 39), (262144, 10000)])
def test_cpu_v2_shares_map_to_weight(shares, weight):
    writes = plan({"cpu": {"shares": shares}}, v2_layout())
    assert writes == [("cpu", "cpu.weight", str(weight))]


def test_cpu_v2_quota_and_period_make_cpu_max():
    writes = plan({"cpu": {"quota": 50000, "period": 100000}}, v2_layout())
    assert writes == [("cpu", "cpu.max", "50000 100000")]


def test_cpu_v2_unlimited_quota_is_max():
    writes = plan({"cpu": {"quota": -1, "period": 200000}}, v2_layout())
    assert writes == [("cpu", "cpu.max", "max 200000")]


@pytest.mark.parametrize("layout", [v1_layout(), v2_layout()], ids=["v1", "v2"])
def test_cpuset_cpus_and_mems(layout):
    writes = plan({"cpu": {"cpus": "0-1,3", "mems": "0"}}, layout)
    assert ("cpuset", "cpuset.cpus", "0-1,3") in writes
    assert ("cpuset", "cpuset.mems", "0") in writes
    assert len(writes) == 2


# ------------------------------------------------------------------------------------
# pids
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", [v1_layout(), v2_layout()], ids=["v1", "v2"])
def test_pids_limit(layout):
    assert plan({"pids": {"limit": 42}}, layout) == [("pids", "pids.max", "42")]
    assert plan({"pids": {"limit": -1}}, layout) == [("pids", "pids.max", "max")]


# ------------------------------------------------------------------------------------
# blockIO
# ------------------------------------------------------------------------------------

def test_blkio_v1_weight_is_cfq_or_bfq_file_with_the_weight_as_is():
    writes = plan({"blockIO": {"weight": 300}}, v1_layout())
    assert len(writes) == 1
    controller, filename, value = writes[0]
    assert controller == "blkio"
    assert filename.split("|") == ["blkio.weight", "blkio.bfq.weight"]
    assert value == "300"


@pytest.mark.parametrize("weight,io_weight", [(10, 1), (500, 4950), (1000, 10000)])
def test_blkio_v2_weight_maps_to_io_weight(weight, io_weight):
    writes = plan({"blockIO": {"weight": weight}}, v2_layout())
    assert len(writes) == 1
    assert writes[0][0] == "io"
    assert value_of(writes, "io.weight") == str(io_weight)


@pytest.mark.parametrize("key,v1_file,v2_key", [
    ("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
    ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
    ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
    ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"),
])
def test_blkio_throttles(key, v1_file, v2_key):
    rate = 1048576 if "Bps" in key else 100
    resources = {"blockIO": {key: [{"major": 8, "minor": 0, "rate": rate}]}}
    assert plan(resources, v1_layout()) == [("blkio", v1_file, "8:0 %d" % rate)]
    assert plan(resources, v2_layout()) == [("io", "io.max", "8:0 %s=%d" % (v2_key, rate))]


def test_blkio_weight_out_of_range_is_refused():
    expect_error(lambda: plan_resources({"blockIO": {"weight": 5}}, v1_layout()),
                 "linux.resources.blockIO.weight")


def test_blkio_throttle_without_rate_is_refused():
    expect_error(lambda: plan_resources({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
                                        v1_layout()),
                 "linux.resources.blockIO.throttleReadBpsDevice[0].rate")


# ------------------------------------------------------------------------------------
# hugepageLimits
# ------------------------------------------------------------------------------------

def test_hugepages_v1():
    layout = v1_layout(extra=("hugetlb",), unified_controllers=())
    writes = plan({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]}, layout)
    assert writes == [("hugetlb", "hugetlb.2MB.limit_in_bytes", str(4 * MB))]


@pytest.mark.parametrize("layout", [v1_layout(), v2_layout()], ids=["hybrid-unified-hugetlb", "v2"])
def test_hugepages_v2(layout):
    writes = plan({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB},
                                      {"pageSize": "1GB", "limit": 0}]}, layout)
    # The reservation limit (Linux 5.7) takes the same value, where the kernel has the file.
    assert writes == [("hugetlb", "hugetlb.2MB.max", str(4 * MB)), ("hugetlb", "?hugetlb.2MB.rsvd.max", str(4 * MB)),
                      ("hugetlb", "hugetlb.1GB.max", "0"), ("hugetlb", "?hugetlb.1GB.rsvd.max", "0")]


def test_hugepages_bad_page_size_is_refused():
    expect_error(lambda: plan_resources({"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}, v2_layout()),
                 "linux.resources.hugepageLimits[0].pageSize")


# ------------------------------------------------------------------------------------
# cgroup v2 values, against runc's for the same linux.resources
# ------------------------------------------------------------------------------------

# Each case: linux.resources (and the container's current resources, for an update), then
# what runc's libcontainer/cgroups/fs2 writes for them (file -> value, "?" where runc
# tolerates a missing file). runc's conversions: cpu.weight = 1 + ((shares - 2) * 9999) / 262142
# (ConvertCPUSharesToCgroupV2Value); io.weight = 1 + (weight - 10) * 9999 / 990
# (ConvertBlkIOToIOWeightValue), BFQ's io.bfq.weight taking the weight as it is; memory.swap.max =
# swap - limit (ConvertMemorySwapToCgroupV2Value); 0 leaves a value unset and -1 is "max" (numToStr).
RUNC_V2_CASES = [
    ("shares-2", {"cpu": {"shares": 2}}, None, {"cpu.weight": "1"}),
    ("shares-100", {"cpu": {"shares": 100}}, None, {"cpu.weight": "4"}),
    ("shares-512", {"cpu": {"shares": 512}}, None, {"cpu.weight": "20"}),
    ("shares-1024", {"cpu": {"shares": 1024}}, None, {"cpu.weight": "39"}),
    ("shares-262144", {"cpu": {"shares": 262144}}, None, {"cpu.weight": "10000"}),
    ("shares-0-unset", {"cpu": {"shares": 0}}, None, {}),
    ("quota-and-period", {"cpu": {"quota": 50000, "period": 200000}}, None, {"cpu.max": "50000 200000"}),
    ("quota-alone", {"cpu": {"quota": 50000}}, None, {"cpu.max": "50000 100000"}),
    ("quota-unlimited", {"cpu": {"quota": -1, "period": 200000}}, None, {"cpu.max": "max 200000"}),
    ("period-alone", {"cpu": {"period": 250000}}, None, {"cpu.max": "max 250000"}),
    ("quota-0-period-0", {"cpu": {"quota": 0, "period": 0}}, None, {}),
    ("update-quota-keeps-period", {"cpu": {"quota": 20000}}, {"cpu": {"quota": 50000, "period": 250000}},
     {"cpu.max": "20000 250000"}),
    ("update-period-keeps-quota", {"cpu": {"period": 50000}}, {"cpu": {"quota": 20000}}, {"cpu.max": "20000 50000"}),
    ("burst-idle", {"cpu": {"burst": 1000, "idle": 1}}, None, {"cpu.max.burst": "1000", "cpu.idle": "1"}),
    ("cpuset", {"cpu": {"cpus": "0-1", "mems": "0"}}, None, {"cpuset.cpus": "0-1", "cpuset.mems": "0"}),
    ("memory", {"memory": {"limit": 64 * MB, "reservation": 32 * MB, "swap": 96 * MB}}, None,
     {"memory.max": str(64 * MB), "memory.low": str(32 * MB), "memory.swap.max": str(32 * MB)}),
    ("memory-no-swap", {"memory": {"limit": 64 * MB, "swap": 64 * MB}}, None,
     {"memory.max": str(64 * MB), "?memory.swap.max": "0"}),
    ("memory-unlimited", {"memory": {"limit": -1}}, None, {"memory.max": "max", "?memory.swap.max": "max"}),
    ("memory-unlimited-swap-given", {"memory": {"limit": -1, "swap": 128 * MB}}, None,
     {"memory.max": "max", "memory.swap.max": str(128 * MB)}),
    ("swap-unlimited", {"memory": {"limit": 64 * MB, "swap": -1}}, None,
     {"memory.max": str(64 * MB), "?memory.swap.max": "max"}),
    ("memory-0-unset", {"memory": {"limit": 0, "reservation": 0, "swap": 0}}, None, {}),
    ("update-swap-alone", {"memory": {"swap": 96 * MB}}, {"memory": {"limit": 64 * MB}},
     {"memory.swap.max": str(32 * MB)}),
    ("pids", {"pids": {"limit": 42}}, None, {"pids.max": "42"}),
    ("pids-unlimited", {"pids": {"limit": -1}}, None, {"pids.max": "max"}),
    ("pids-0-unset", {"pids": {"limit": 0}}, None, {}),
    ("blkio-weight-10", {"blockIO": {"weight": 10}}, None, {"io.bfq.weight": "10", "io.weight": "1"}),
    ("blkio-weight-100", {"blockIO": {"weight": 100}}, None, {"io.bfq.weight": "100", "io.weight": "910"}),
    ("blkio-weight-500", {"blockIO": {"weight": 500}}, None, {"io.bfq.weight": "500", "io.weight": "4950"}),
    ("blkio-weight-1000", {"blockIO": {"weight": 1000}}, None, {"io.bfq.weight": "1000", "io.weight": "10000"}),
    ("throttle", {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                              "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]}}, None,
     {"io.max": ["8:0 rbps=1048576", "8:16 wiops=100"]}),
    ("hugetlb", {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]}, None,
     {"hugetlb.2MB.max": str(4 * MB), "?hugetlb.2MB.rsvd.max": str(4 * MB)}),
    ("unified", {"unified": {"memory.high": "1073741824", "memory.oom.group": "1"}}, None,
     {"memory.high": "1073741824", "memory.oom.group": "1"}),
]


def v2_files(writes):
    """{file (with "?" when optional): value}, one entry per alternative of an "a|b" write; a file
    written several times (io.max) maps to the list of its values."""
    files = {}
    for controller, filename, value in writes:
        optional = "?" if filename.startswith("?") else ""
        names = filename.lstrip("?").split("|")
        values = value.split("|") if "|" in value else [value] * len(names)
        for name, each in zip(names, values):
            key = optional + name
            if key in files:
                files[key] = (files[key] if isinstance(files[key], list) else [files[key]]) + [each]
            else:
                files[key] = each
    return files


@pytest.mark.parametrize("resources,current,expected", [case[1:] for case in RUNC_V2_CASES],
                         ids=[case[0] for case in RUNC_V2_CASES])
def test_v2_writes_match_runc(resources, current, expected):
    assert v2_files(triples(plan_resources(resources, v2_layout(), current=current))) == expected


@pytest.mark.parametrize("resources,current,field", [
    ({"memory": {"swap": 64 * MB}}, None, "linux.resources.memory.swap"),
    ({"memory": {"limit": 0, "swap": 64 * MB}}, None, "linux.resources.memory.swap"),
    ({"memory": {"swap": 32 * MB}}, {"memory": {"limit": 64 * MB}}, "linux.resources.memory.swap"),
    ({"memory": {"limit": 64 * MB, "swap": 32 * MB}}, None, "linux.resources.memory.swap"),
    ({"cpu": {"realtimePeriod": 1000000}}, None, "linux.resources.cpu.realtimePeriod"),
    ({"cpu": {"realtimeRuntime": 950000}}, None, "linux.resources.cpu.realtimeRuntime"),
    ({"blockIO": {"leafWeight": 300}}, None, "linux.resources.blockIO.leafWeight"),
    ({"network": {"classID": 1}}, None, "linux.resources.network.classID"),
], ids=["swap-without-limit", "swap-with-limit-0", "update-swap-below-current-limit", "swap-below-limit",
        "realtime-period", "realtime-runtime", "leaf-weight", "net-cls"])
def test_v2_refuses_what_it_cannot_apply_naming_the_field(resources, current, field):
    """runc refuses the swap cases too; v2 has no realtime limits, leaf weight or net_cls, which runc
    would drop without a word: refused here, naming the field."""
    message = expect_error(lambda: plan_resources(resources, v2_layout(), current=current), field + ":")
    assert message.startswith(field + ":"), message


def test_v2_limits_of_an_update_do_not_touch_what_it_leaves_out():
    writes = plan({"memory": {"limit": 128 * MB}}, v2_layout())
    assert writes == [("memory", "memory.max", str(128 * MB))]


def test_v2_io_weight_of_a_device():
    writes = plan({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 500}]}}, v2_layout())
    assert v2_files(writes) == {"io.bfq.weight": "8:0 500", "io.weight": "8:0 4950"}


def test_v2_throttle_rate_0_removes_the_limit():
    """v1 reads rate 0 as no limit; v2's io.max refuses 0 (ERANGE) and says "max"."""
    writes = plan({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 0}]}}, v2_layout())
    assert writes == [("io", "io.max", "8:0 rbps=max")]


# ------------------------------------------------------------------------------------
# unified
# ------------------------------------------------------------------------------------

def test_unified_keys_on_v2():
    writes = plan({"unified": {"memory.high": "1073741824", "pids.max": "10"}}, v2_layout())
    assert writes == [("unified", "memory.high", "1073741824"), ("unified", "pids.max", "10")]


def test_unified_key_for_a_controller_the_unified_hierarchy_has():
    writes = plan({"unified": {"hugetlb.2MB.max": "0"}}, v1_layout())
    assert writes == [("unified", "hugetlb.2MB.max", "0")]


def test_unified_key_for_a_controller_missing_from_the_unified_hierarchy_is_refused():
    # On the hybrid host memory is a v1 controller: the unified hierarchy lacks it.
    expect_error(lambda: plan_resources({"unified": {"memory.high": "1"}}, v1_layout()),
                 "linux.resources.unified.memory.high", "memory")


def test_unified_key_for_an_unknown_controller_is_refused():
    expect_error(lambda: plan_resources({"unified": {"bogus.max": "1"}}, v2_layout()),
                 "linux.resources.unified.bogus.max", "bogus")


def test_unified_keys_need_a_unified_hierarchy():
    expect_error(lambda: plan_resources({"unified": {"pids.max": "1"}}, v1_layout(unified=False)),
                 "linux.resources.unified.pids.max", "v2")


@pytest.mark.parametrize("key", ["cgroup.procs", "cgroup.kill", "cgroup.freeze", "cgroup.subtree_control",
                                 "cgroup.threads", "cgroup.type"])
def test_unified_keys_the_runtime_drives_are_refused(key):
    expect_error(lambda: plan_resources({"unified": {key: "1"}}, v2_layout()), "linux.resources.unified." + key,
                 "runtime")


def test_unified_cgroup_core_limits_are_allowed():
    assert plan({"unified": {"cgroup.max.descendants": "5"}}, v2_layout()) == [
        ("unified", "cgroup.max.descendants", "5")]


@pytest.mark.parametrize("unified", [{"../memory.max": "1"}, {"memory.max": 1}, {"memorymax": "1"},
                                     {".max": "1"}, {"memory.": "1"}])
def test_unified_bad_key_or_value_is_refused(unified):
    expect_error(lambda: plan_resources({"unified": unified}, v2_layout()), "linux.resources.unified.")


# ------------------------------------------------------------------------------------
# network, rdma
# ------------------------------------------------------------------------------------

def test_network_class_id_without_net_cls_is_refused_naming_the_field():
    expect_error(lambda: plan_resources({"network": {"classID": 1048577}}, v1_layout()),
                 "linux.resources.network.classID", "net_cls")


def test_network_class_id_with_net_cls():
    writes = plan({"network": {"classID": 1048577}}, v1_layout(extra=("net_cls",)))
    assert writes == [("net_cls", "net_cls.classid", "1048577")]


def test_network_priorities_without_net_prio_are_refused():
    expect_error(lambda: plan_resources({"network": {"priorities": [{"name": "eth0", "priority": 5}]}},
                                        v1_layout()),
                 "linux.resources.network.priorities[0]", "net_prio")


def test_rdma_without_the_controller_is_refused():
    expect_error(lambda: plan_resources({"rdma": {"mlx5_0": {"hcaHandles": 3}}}, v1_layout()),
                 "linux.resources.rdma.mlx5_0", "rdma")


# ------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("resources,field", [
    ({"memory": {"limit": -5}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": "64m"}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": 1.5}}, "linux.resources.memory.limit"),
    ({"memory": {"reservation": -2}}, "linux.resources.memory.reservation"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"disableOOMKiller": "yes"}}, "linux.resources.memory.disableOOMKiller"),
    ({"cpu": {"shares": True}}, "linux.resources.cpu.shares"),
    ({"cpu": {"quota": "50000"}}, "linux.resources.cpu.quota"),
    ({"cpu": {"cpus": 0}}, "linux.resources.cpu.cpus"),
    ({"pids": {"limit": "10"}}, "linux.resources.pids.limit"),
    ({"pids": {"limit": False}}, "linux.resources.pids.limit"),
    ({"memory": []}, "linux.resources.memory"),
    ({"hugepageLimits": {}}, "linux.resources.hugepageLimits"),
], ids=lambda value: repr(value) if isinstance(value, dict) else None)
@pytest.mark.parametrize("layout", [v1_layout(), v2_layout()], ids=["v1", "v2"])
def test_bad_values_are_refused_naming_the_field(resources, field, layout):
    message = expect_error(lambda: plan_resources(resources, layout), field + ":")
    assert message.startswith(field + ":"), message


def test_resources_must_be_an_object():
    expect_error(lambda: plan_resources(["memory"], v1_layout()), "linux.resources")


def test_empty_resources_plan_nothing():
    assert plan_resources(None, v1_layout()) == []
    assert plan_resources({}, v2_layout()) == []


# ------------------------------------------------------------------------------------
# plan_devices
# ------------------------------------------------------------------------------------

# runc's default allows after the container's own rules: mknod of any node,
# then /dev/null, zero, full, random, urandom, tty, console, ptmx, pts/*.
DEFAULT_ENTRIES = {"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                   "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"}


def device_writes(rules, layout=None):
    return triples(plan_devices(rules, layout or v1_layout()))


def test_devices_config_rules_come_first_then_the_defaults():
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "b", "major": 254, "minor": 0, "access": "r"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]
    writes = device_writes(rules)
    assert writes[:3] == [("devices", "devices.deny", "a"),
                          ("devices", "devices.allow", "b 254:0 r"),
                          ("devices", "devices.deny", "c 1:3 w")]
    rest = writes[3:]
    assert all(w[:2] == ("devices", "devices.allow") for w in rest), rest
    assert sorted(w[2] for w in rest) == sorted(DEFAULT_ENTRIES)


def test_devices_no_rules_still_get_the_defaults():
    writes = device_writes(None)
    assert sorted(w[2] for w in writes) == sorted(DEFAULT_ENTRIES)


def test_devices_wildcard_type_is_a_rule():
    assert device_writes([{"allow": True}])[0] == ("devices", "devices.allow", "a")
    assert device_writes([{"allow": False, "type": "a", "access": "rwm"}])[0] == ("devices", "devices.deny", "a")


@pytest.mark.parametrize("rule,entry", [
    ({"allow": True, "type": "c", "access": "rw"}, "c *:* rw"),
    ({"allow": True, "type": "c", "major": 10, "access": "rw"}, "c 10:* rw"),
    ({"allow": True, "type": "b", "minor": 3, "access": "m"}, "b *:3 m"),
    ({"allow": True, "type": "c", "major": -1, "minor": -1, "access": "r"}, "c *:* r"),
    ({"allow": True, "type": "c", "major": 1, "minor": 3}, "c 1:3 rwm"),
])
def test_devices_missing_major_or_minor_is_a_star(rule, entry):
    assert device_writes([rule])[0] == ("devices", "devices.allow", entry)


@pytest.mark.parametrize("rules,field", [
    ([{"allow": True, "type": "x", "access": "r"}], "linux.resources.devices[0].type"),
    ([{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "access": "rwz"}],
     "linux.resources.devices[1].access"),
    ([{"allow": False}, {"allow": True}, {"type": "c", "access": "r"}], "linux.resources.devices[2].allow"),
    ([{"allow": "yes", "access": "r"}], "linux.resources.devices[0].allow"),
    ([{"allow": True, "type": "c", "major": "1", "access": "r"}], "linux.resources.devices[0].major"),
    (["c 1:3 rwm"], "linux.resources.devices[0]"),
])
def test_devices_bad_rules_name_the_rule(rules, field):
    expect_error(lambda: plan_devices(rules, v1_layout()), field)


def test_devices_must_be_a_list():
    expect_error(lambda: plan_devices({"allow": False}, v1_layout()), "linux.resources.devices")


def test_devices_on_pure_v2_plan_one_device_program():
    planned = plan_devices([{"allow": False, "access": "rwm"}], v2_layout())
    assert len(planned) == 1
    program = planned[0]
    assert isinstance(program, device_program.DeviceProgram)
    # Installed on the container's directory of the unified hierarchy, like a write to it.
    assert program.controller == "unified"
    assert program.field == "linux.resources.devices"
    assert program.value.startswith("default deny; allow c *:* m; allow b *:* m; allow c 1:3 rwm"), program.value


def test_devices_on_pure_v2_without_rules_still_get_a_program():
    """No rules: everything stays allowed, as in a new v1 cgroup; the program is attached all the
    same, so that `update` always has one to replace."""
    for rules in (None, []):
        planned = plan_devices(rules, v2_layout())
        assert len(planned) == 1 and planned[0].value == "default allow", planned
        assert decide(planned[0], "b", 8, 0, "rwm") == 1


def test_devices_on_hybrid_with_the_v1_controller_stay_v1_writes():
    writes = plan_devices([{"allow": False, "access": "rwm"}], v1_layout())
    assert all(isinstance(w, Write) and w.controller == "devices" for w in writes), writes


def test_devices_on_hybrid_without_the_v1_controller_use_the_unified_hierarchy():
    found = [Hierarchy("/sys/fs/cgroup/memory", "/", 1, ["memory"]), Hierarchy("/sys/fs/cgroup/unified", "/", 2, [])]
    planned = plan_devices([{"allow": False, "access": "rwm"}], Layout(found, unified_controllers=[]))
    assert len(planned) == 1 and isinstance(planned[0], device_program.DeviceProgram)


def test_devices_without_any_cgroup_hierarchy_to_enforce_them_is_an_error():
    layout = Layout([Hierarchy("/sys/fs/cgroup/memory", "/", 1, ["memory"])], unified_controllers=[])
    expect_error(lambda: plan_devices([{"allow": False, "access": "rwm"}], layout), "linux.resources.devices",
                 "devices controller")
    assert plan_devices(None, layout) == []


# ------------------------------------------------------------------------------------
# the cgroup v2 device program, run through an eBPF interpreter
# ------------------------------------------------------------------------------------

ACCESS_BITS = {"m": 1, "r": 2, "w": 4}
TYPE_BITS = {"b": 1, "c": 2}


def run_ebpf(instructions, context):
    """R0 of INSTRUCTIONS for CONTEXT (u32 words of struct bpf_cgroup_dev_ctx). Only the opcodes
    device_program.py emits are known; a read of an unset register, a jump backwards or out of
    the program, and a ctx read other than a u32 field fail the test."""
    regs = {1: "ctx"}
    pc = 0
    steps = 0
    while True:
        assert 0 <= pc < len(instructions), "pc %d left the program" % pc
        steps += 1
        assert steps <= len(instructions), "more steps than instructions: a loop?"
        code, dst, src, off, imm = instructions[pc]

        def reg(number):
            assert number in regs and regs[number] != "ctx", "r%d read before it is set (pc %d)" % (number, pc)
            return regs[number]
        if code == 0x61:  # ldxw dst, [src + off]
            assert regs.get(src) == "ctx" and off in (0, 4, 8) and imm == 0, instructions[pc]
            regs[dst] = context[off // 4]
        elif code == 0x54:
            regs[dst] = reg(dst) & imm
        elif code == 0x74:
            regs[dst] = reg(dst) >> imm
        elif code == 0xb4:
            regs[dst] = imm
        elif code == 0xbc:
            regs[dst] = reg(src)
        elif code in (0x55, 0x5d, 0x15):
            assert off >= 0, "a backward jump at %d" % pc
            other = imm if code != 0x5d else reg(src)
            taken = reg(dst) == other if code == 0x15 else reg(dst) != other
            if taken:
                pc += off
        elif code == 0x95:
            return reg(0)
        else:
            raise AssertionError("opcode 0x%x at %d is not one device_program.py emits" % (code, pc))
        pc += 1


def decide(planned, kind, major, minor, access):
    """1 (allowed) or 0 for opening (r, w) or making (m) device KIND MAJOR:MINOR."""
    bits = 0
    for letter in access:
        bits |= ACCESS_BITS[letter]
    return run_ebpf(planned.program.instructions, (bits << 16 | TYPE_BITS[kind], major, minor))


def program_for(rules, defaults=True):
    """The program for RULES (linux.resources.devices), after the default rules unless DEFAULTS is false."""
    if defaults:
        return plan_devices(rules, v2_layout())[0]
    checked = [dict(rule, field="rule%d" % index, type=rule.get("type") or "a", access=rule.get("access") or "rwm")
               for index, rule in enumerate(rules)]
    return device_program.plan(checked)


DENY_ALL = {"allow": False, "access": "rwm"}


@pytest.mark.parametrize("kind,major,minor,access,allowed", [
    ("c", 1, 3, "rwm", 1),     # /dev/null
    ("c", 1, 5, "r", 1),       # /dev/zero
    ("c", 1, 9, "rw", 1),      # /dev/urandom
    ("c", 5, 2, "rw", 1),      # /dev/ptmx
    ("c", 136, 7, "rw", 1),    # /dev/pts/7
    ("c", 1, 1, "r", 0),       # /dev/mem
    ("c", 1, 11, "r", 0),      # /dev/kmsg
    ("c", 10, 200, "rw", 0),   # /dev/net/tun
    ("b", 8, 0, "r", 0),       # a disk
    ("c", 10, 200, "m", 1),    # mknod of any node is allowed...
    ("b", 8, 0, "m", 1),
    ("b", 8, 0, "rm", 0),      # ...but not together with reading it
])
def test_the_default_config_allows_the_standard_devices_only(kind, major, minor, access, allowed):
    assert decide(program_for([DENY_ALL]), kind, major, minor, access) == allowed


def test_an_allow_rule_opens_a_device_for_its_access_only():
    program = program_for([DENY_ALL, {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}])
    assert decide(program, "b", 8, 0, "r") == 1
    assert decide(program, "b", 8, 0, "w") == 0
    assert decide(program, "b", 8, 0, "rw") == 0
    assert decide(program, "b", 8, 1, "r") == 0
    assert decide(program, "c", 8, 0, "r") == 0, "the type is part of the match"


def test_wildcard_major_or_minor():
    program = program_for([DENY_ALL, {"allow": True, "type": "c", "major": 10, "access": "rw"},
                           {"allow": True, "type": "b", "minor": 7, "access": "r"},
                           {"allow": True, "type": "c", "major": -1, "minor": 42, "access": "w"}], defaults=False)
    assert decide(program, "c", 10, 200, "rw") == 1
    assert decide(program, "c", 10, 1, "r") == 1
    assert decide(program, "c", 11, 200, "r") == 0
    assert decide(program, "b", 259, 7, "r") == 1
    assert decide(program, "b", 259, 8, "r") == 0
    assert decide(program, "c", 99, 42, "w") == 1
    assert decide(program, "c", 99, 42, "r") == 0


def test_one_rule_must_cover_all_the_access_asked_as_in_v1():
    # Two rules for the same device merge; one for a wildcard does not help another's access.
    program = program_for([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"},
                           {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"},
                           {"allow": True, "type": "c", "major": 4, "minor": 1, "access": "r"},
                           {"allow": True, "type": "c", "major": 4, "access": "w"}], defaults=False)
    assert decide(program, "c", 1, 11, "rw") == 1
    assert decide(program, "c", 4, 1, "r") == 1 and decide(program, "c", 4, 1, "w") == 1
    assert decide(program, "c", 4, 1, "rw") == 0


def test_a_later_deny_takes_access_back():
    program = program_for([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwm"},
                           {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"}], defaults=False)
    assert decide(program, "c", 1, 11, "r") == 1
    assert decide(program, "c", 1, 11, "m") == 1
    assert decide(program, "c", 1, 11, "w") == 0
    program = program_for([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"},
                           {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwm"}], defaults=False)
    assert decide(program, "c", 1, 11, "r") == 0
    assert program.program.exceptions == []


def test_allow_all_then_deny_rules_make_an_allow_default_with_exceptions():
    program = program_for([{"allow": True, "access": "rwm"},
                           {"allow": False, "type": "c", "major": 1, "minor": 1, "access": "rw"},
                           {"allow": False, "type": "b", "access": "w"}], defaults=False)
    assert program.value.startswith("default allow; deny c 1:1 rw; deny b *:* w"), program.value
    assert decide(program, "c", 1, 1, "r") == 0
    assert decide(program, "c", 1, 1, "m") == 1
    assert decide(program, "c", 1, 3, "rw") == 1
    assert decide(program, "b", 8, 0, "r") == 1
    # Under an allow default, any overlap with a deny exception denies (v1's match_exception_partial).
    assert decide(program, "b", 8, 0, "rw") == 0


def test_a_type_a_rule_resets_what_came_before():
    rules = [DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"},
             {"allow": True, "type": "a", "access": "r"}]
    program = program_for(rules, defaults=False)
    assert program.value == "default allow"
    assert decide(program, "b", 8, 0, "rw") == 1
    program = program_for(rules + [{"allow": False, "type": "a"}], defaults=False)
    assert program.value == "default deny"
    assert decide(program, "c", 1, 11, "r") == 0


def test_a_deny_that_would_punch_a_hole_in_a_wildcard_allow_is_refused():
    """v1 would keep allowing c 1:11 (it only removes exact matches); refused, naming both rules."""
    rules = [DENY_ALL, {"allow": True, "type": "c", "access": "rwm"},
             {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "r"}]
    message = expect_error(lambda: plan_devices(rules, v2_layout()), "linux.resources.devices[2]",
                           "linux.resources.devices[1]", "c *:* rwm")
    assert message.startswith("linux.resources.devices[2]:"), message


def test_a_deny_outside_the_wildcard_access_is_no_hole():
    rules = [DENY_ALL, {"allow": True, "type": "c", "access": "r"},
             {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"}]
    program = plan_devices(rules, v2_layout())[0]
    assert decide(program, "c", 1, 11, "r") == 1 and decide(program, "c", 1, 11, "w") == 0


def test_numbers_no_device_can_have_never_match():
    program = program_for([DENY_ALL, {"allow": True, "type": "c", "major": 4096, "minor": 0, "access": "r"},
                           {"allow": True, "type": "c", "major": 1, "minor": 1 << 20, "access": "r"}], defaults=False)
    assert decide(program, "c", 4096 & 0xFFF, 0, "r") == 0
    assert decide(program, "c", 1, 0, "r") == 0
    assert len(program.program.instructions) == 8  # the prologue and the default: nothing else


def test_the_program_is_straight_line_and_ends_in_exit():
    program = plan_devices([DENY_ALL, {"allow": True, "type": "b", "major": 8, "access": "r"}], v2_layout())[0]
    instructions = program.program.instructions
    assert instructions[-1][0] == 0x95 and instructions[-2][:2] == (0xb4, 0)
    for index, (code, dst, src, off, imm) in enumerate(instructions):
        assert 0 <= dst <= 10 and 0 <= src <= 10
        if code in (0x55, 0x5d, 0x15):
            assert 0 < off and index + off + 1 < len(instructions), (index, instructions[index])
    # Every rule's instructions say which rule they check, for the verifier's errors.
    assert set(program.program.origins) == {None, "linux.resources.devices[1]", "default device rules"}


def test_instructions_encode_as_struct_bpf_insn():
    program = program_for([DENY_ALL], defaults=False)
    code = program.program.encode()
    assert len(code) == 8 * len(program.program.instructions)
    if sys.byteorder == "little":
        # ldxw r4, [r1 + 4]: code 0x61, dst 4 in the low nibble, src 1 in the high one, off 4, imm 0.
        index = program.program.instructions.index((0x61, 4, 1, 4, 0))
        assert code[8 * index:8 * index + 8] == bytes([0x61, 0x14, 4, 0, 0, 0, 0, 0])
        # the default: mov32 r0, 0; exit.
        assert code[-16:] == bytes([0xb4, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])


class RecordingBpf:
    """A stand-in for syscalls.bpf: records each command, answers as a kernel with one program
    (id OLD_ID, named NAME) attached to the cgroup."""

    OLD_ID = 41

    def __init__(self, name):
        self.name = name
        self.calls = []

    def __call__(self, command, attr_size, values, what, inputs=None, outputs=None):
        self.calls.append((command, dict(values)))
        if command in (device_program.BPF_PROG_LOAD, device_program.BPF_PROG_GET_FD_BY_ID):
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), b"", {}
        if command == device_program.BPF_PROG_QUERY:
            attr = bytearray(attr_size)
            attr[24:28] = (1).to_bytes(4, sys.byteorder)
            return 0, bytes(attr), {16: self.OLD_ID.to_bytes(4, sys.byteorder) + bytes(outputs[16] - 4)}
        if command == device_program.BPF_OBJ_GET_INFO_BY_FD:
            info = bytearray(80)
            info[64:64 + len(self.name)] = self.name
            return 0, b"", {8: bytes(info)}
        return 0, b"", {}

    def commands(self):
        return [command for command, _values in self.calls]


def test_install_attaches_the_new_program_before_it_detaches_the_old_one(tmp_path, monkeypatch):
    """No moment without a program: with both attached the kernel allows what both allow."""
    fake = RecordingBpf(device_program.PROGRAM_NAME)
    monkeypatch.setattr(device_program.syscalls, "bpf", fake)
    plan_devices([DENY_ALL], v2_layout())[0].install(str(tmp_path))
    commands = fake.commands()
    attach = commands.index(device_program.BPF_PROG_ATTACH)
    detach = commands.index(device_program.BPF_PROG_DETACH)
    assert commands[0] == device_program.BPF_PROG_LOAD
    assert attach < detach, commands
    assert fake.calls[attach][1][12] == device_program.BPF_F_ALLOW_MULTI
    assert fake.calls[attach][1][8] == device_program.BPF_CGROUP_DEVICE
    # The old program was looked up by its id to be detached.
    assert fake.calls[detach - 1] == (device_program.BPF_PROG_GET_FD_BY_ID, {0: RecordingBpf.OLD_ID})
    load = fake.calls[0][1]
    assert load[0] == device_program.BPF_PROG_TYPE_CGROUP_DEVICE and load[48] == device_program.PROGRAM_NAME


def test_install_leaves_programs_named_otherwise(tmp_path, monkeypatch):
    fake = RecordingBpf(b"agent_devices")
    monkeypatch.setattr(device_program.syscalls, "bpf", fake)
    plan_devices([DENY_ALL], v2_layout())[0].install(str(tmp_path))
    assert device_program.BPF_PROG_ATTACH in fake.commands()
    assert device_program.BPF_PROG_DETACH not in fake.commands()


def test_a_refused_load_is_retried_with_a_log_that_names_the_rule(monkeypatch):
    planned = plan_devices([DENY_ALL, {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "r"}],
                           v2_layout())[0]
    index = planned.program.origins.index("linux.resources.devices[1]")
    calls = []

    def refuse(command, attr_size, values, what, inputs=None, outputs=None):
        calls.append(dict(values))
        failure = OSError(13, "Permission denied")
        failure.outputs = {32: ("0: (61) r2 = *(u32 *)(r1 +0)\n%d: (55) if r2 != 0x2 goto pc+7\n"
                                "R6 !read_ok\n\0garbage" % index).encode()} if outputs else {}
        raise failure
    monkeypatch.setattr(device_program.syscalls, "bpf", refuse)
    message = expect_error(lambda: device_program.load(planned.program), "R6 !read_ok")
    assert message.startswith("linux.resources.devices[1]: the kernel refused"), message
    assert "garbage" not in message
    assert 24 not in calls[0] and calls[1][24] == 1, "only the second load asks for a log"


def test_loading_without_privilege_says_what_is_needed(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(device_program.syscalls, "bpf", refuse)
    expect_error(lambda: device_program.load(program_for([DENY_ALL]).program), "linux.resources.devices",
                 "CAP_SYS_ADMIN")


def test_the_v1_and_v2_plans_refuse_the_same_bad_rules():
    rules = [{"allow": True, "type": "x", "access": "r"}]
    expect_error(lambda: plan_devices(rules, v2_layout()), "linux.resources.devices[0].type")
    expect_error(lambda: plan_devices([{"allow": True, "access": "q"}], v2_layout()),
                 "linux.resources.devices[0].access")


# ------------------------------------------------------------------------------------
# resolve_path
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("given,expected", [
    (None, "/ocirt/web1"),
    ("", "/ocirt/web1"),
    ("foo/bar", "/ocirt/foo/bar"),
    ("web", "/ocirt/web"),
    ("/machine/web", "/machine/web"),
    ("/a//b/", "/a/b"),
])
def test_resolve_path(given, expected):
    assert resolve_path(given, "web1") == expected


@pytest.mark.parametrize("given", ["..", "../x", "/a/../b", "a/./b", "/", "/.."])
def test_resolve_path_refuses_dot_components_and_empty_paths(given):
    expect_error(lambda: resolve_path(given, "web1"), "linux.cgroupsPath")


def test_resolve_path_systemd_form_is_refused_mentioning_systemd():
    message = expect_error(lambda: resolve_path("system.slice:ocirt:web", "web1"), "linux.cgroupsPath")
    assert "systemd" in message, message


# ------------------------------------------------------------------------------------
# the systemd form of linux.cgroupsPath: slice:prefix:name
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("given,unit,path", [
    ("system.slice:ocirt:web", "ocirt-web.scope", "/system.slice/ocirt-web.scope"),
    (":ocirt:web", "ocirt-web.scope", "/system.slice/ocirt-web.scope"),
    ("machine.slice:libpod:abc", "libpod-abc.scope", "/machine.slice/libpod-abc.scope"),
    ("machine-pods-a.slice:p:x", "p-x.scope", "/machine.slice/machine-pods.slice/machine-pods-a.slice/p-x.scope"),
    ("-.slice:ocirt:web", "ocirt-web.scope", "/ocirt-web.scope"),
    ("system.slice::web", "web.scope", "/system.slice/web.scope"),
    ("system.slice:ocirt:", "ocirt-web1.scope", "/system.slice/ocirt-web1.scope"),
])
def test_systemd_form_names_a_scope_in_a_slice(given, unit, path):
    scope = systemd.parse(given, "web1")
    assert (scope.unit, scope.path) == (unit, path)
    assert scope.slice == (given.split(":")[0] or "system.slice")


@pytest.mark.parametrize("given,needle", [
    ("system:ocirt:web", "not a slice"),
    ("a--b.slice:ocirt:web", "not a valid slice name"),
    ("-a.slice:ocirt:web", "not a valid slice name"),
    ("system.slice:oc/irt:web", "not a valid systemd unit name"),
    ("system.slice:ocirt:w eb", "not a valid systemd unit name"),
    ("system.slice:ocirt:sub.slice", "a slice as the container's own unit"),
])
def test_systemd_form_refuses_bad_names(given, needle):
    expect_error(lambda: systemd.parse(given, "web1"), "linux.cgroupsPath", needle)


def test_systemd_form_without_systemd_says_why(monkeypatch):
    monkeypatch.setattr(systemd, "available", lambda: "PID 1 is not systemd (no /run/systemd/system)")
    message = expect_error(lambda: resolve_path("system.slice:ocirt:web", "web1"), "linux.cgroupsPath",
                           "PID 1 is not systemd", "/machine/ocirt-web")
    assert "systemd" in message


def test_systemd_form_with_systemd_resolves_to_the_scope(monkeypatch):
    monkeypatch.setattr(systemd, "available", lambda: None)
    assert resolve_path("system.slice:ocirt:web", "web1") == "/system.slice/ocirt-web.scope"
    assert systemd_scope("system.slice:ocirt:web", "web1").unit == "ocirt-web.scope"
    assert systemd_scope("/machine/web", "web1") is None
    assert systemd_scope(None, "web1") is None


# ------------------------------------------------------------------------------------
# the v2 backend, against a directory shaped like a cgroup2 mount
# ------------------------------------------------------------------------------------

V2_CHILD_FILES = ("memory.max", "memory.low", "memory.swap.max", "pids.max", "cpu.max", "cpu.weight",
                  "io.max", "io.weight", "hugetlb.2MB.max", "cgroup.subtree_control", "cgroup.procs")


def touch(path, text=""):
    with open(path, "w") as handle:
        handle.write(text)


def read(path):
    with open(path) as handle:
        return handle.read()


@pytest.fixture
def fake_v2(tmp_path):
    """tmp/unified shaped like a cgroup2 root; returns (mountpoint, layout read from its files)."""
    mount = tmp_path / "unified"
    mount.mkdir()
    touch(str(mount / "cgroup.controllers"), "memory pids cpu io hugetlb\n")
    touch(str(mount / "cgroup.subtree_control"))
    touch(str(mount / "cgroup.procs"))
    # unified_controllers left out: the layout reads them from cgroup.controllers.
    layout = Layout([Hierarchy(str(mount), "/", 2, [])])
    return str(mount), layout


def kernel_files(directory, names=V2_CHILD_FILES):
    """What the kernel would put in a new cgroup directory (a plain directory needs them made)."""
    for name in names:
        touch(os.path.join(directory, name))


def remove_files(directory):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if not os.path.isdir(path):
            os.unlink(path)


def test_fake_v2_layout_reads_the_controllers_file(fake_v2):
    _mount, layout = fake_v2
    assert layout.mode == "v2"
    assert layout.unified_controllers == {"memory", "pids", "cpu", "io", "hugetlb"}


def test_v2_backend_creates_applies_and_destroys(fake_v2):
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/x", owned=True)
    parent = os.path.join(mount, "ocirt")
    leaf = os.path.join(parent, "x")
    assert os.path.isdir(leaf)
    assert cgroup.dirs == {"unified": leaf}
    # The runtime's shared parent is never this container's to remove.
    assert cgroup.created == [leaf]
    assert cgroup.to_record()["mode"] == "v2"
    kernel_files(parent, ("cgroup.subtree_control", "cgroup.procs"))
    kernel_files(leaf)

    resources = {
        "memory": {"limit": 64 * MB, "reservation": 32 * MB, "swap": 96 * MB},
        "pids": {"limit": 42},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}],
    }
    cgroup.apply(plan_resources(resources, layout), layout)
    expected = {
        "memory.max": str(64 * MB),
        "memory.low": str(32 * MB),
        "memory.swap.max": str(32 * MB),
        "pids.max": "42",
        "cpu.max": "50000 100000",
        "cpu.weight": "39",
        "io.max": "8:0 rbps=1048576",
        "io.weight": "4950",
        "hugetlb.2MB.max": str(4 * MB),
    }
    for name, value in expected.items():
        assert read(os.path.join(leaf, name)) == value, name
    # Every ancestor delegates the controllers the container's limits use.
    for directory in (mount, parent):
        tokens = read(os.path.join(directory, "cgroup.subtree_control")).split()
        assert set(tokens) == {"+memory", "+pids", "+cpu", "+io", "+hugetlb"}, directory
    # ...and the leaf does not (a v2 cgroup with processes may not delegate).
    assert read(os.path.join(leaf, "cgroup.subtree_control")) == ""

    cgroup.add_process(4242)
    assert read(os.path.join(leaf, "cgroup.procs")) == "4242"
    assert cgroup.procs() == [4242]

    remove_files(leaf)  # what rmdir of a real cgroup does by itself
    cgroup.destroy()
    assert not os.path.exists(leaf)
    assert os.path.isdir(parent), "the shared /ocirt parent must stay"


def test_v2_backend_record_round_trip(fake_v2):
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/rt", owned=True)
    again = Cgroup.from_record(cgroup.to_record())
    assert again.dirs == cgroup.dirs and again.created == cgroup.created
    assert Cgroup.from_record(None) is None
    again.destroy()
    assert not os.path.exists(os.path.join(mount, "ocirt", "rt"))


def test_v2_backend_destroy_removes_only_what_it_created(fake_v2):
    mount, layout = fake_v2
    os.mkdir(os.path.join(mount, "machine"))
    kernel_files(os.path.join(mount, "machine"), ("cgroup.subtree_control", "cgroup.procs"))
    cgroup = Cgroup.create(layout, "/machine/pod/web", owned=False)
    pod = os.path.join(mount, "machine", "pod")
    web = os.path.join(pod, "web")
    assert sorted(cgroup.created) == sorted([pod, web])
    cgroup.destroy()
    assert not os.path.exists(pod)
    assert os.path.isdir(os.path.join(mount, "machine")), "a pre-existing parent must stay"
    assert os.path.exists(os.path.join(mount, "machine", "cgroup.procs"))


def test_v2_backend_joins_an_existing_given_path_and_leaves_it(fake_v2):
    mount, layout = fake_v2
    existing = os.path.join(mount, "given")
    os.mkdir(existing)
    kernel_files(existing)
    cgroup = Cgroup.create(layout, "/given", owned=False)
    assert cgroup.created == []
    assert cgroup.dirs == {"unified": existing}
    cgroup.destroy()
    assert os.path.isdir(existing)


def test_v2_backend_owned_path_with_processes_is_refused(fake_v2):
    mount, layout = fake_v2
    busy = os.path.join(mount, "ocirt", "busy")
    os.makedirs(busy)
    touch(os.path.join(busy, "cgroup.procs"), "1234\n")
    expect_error(lambda: Cgroup.create(layout, "/ocirt/busy", owned=True), "already exists with processes")
    assert os.path.isdir(busy), "a cgroup that is not ours must not be removed"


def test_v2_backend_missing_interface_file_is_a_clear_error(fake_v2):
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/nofile", owned=True)
    leaf = os.path.join(mount, "ocirt", "nofile")
    kernel_files(os.path.join(mount, "ocirt"), ("cgroup.subtree_control",))
    kernel_files(leaf, ("cgroup.subtree_control", "cgroup.procs"))
    message = expect_error(lambda: cgroup.apply(plan_resources({"pids": {"limit": 5}}, layout), layout),
                           "linux.resources.pids.limit", "pids.max")
    assert leaf in message
    remove_files(leaf)
    cgroup.destroy()
    assert not os.path.exists(leaf)


def test_v2_backend_destroy_of_a_non_empty_plain_dir_leaves_it(fake_v2):
    """A plain directory with files cannot be rmdir'ed (a real cgroup can): the leaf
    stays, as it would when another container's cgroup lives below it."""
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/full", owned=True)
    leaf = os.path.join(mount, "ocirt", "full")
    kernel_files(leaf)
    cgroup.destroy()
    assert os.path.isdir(leaf)
    remove_files(leaf)
    cgroup.destroy()
    assert not os.path.exists(leaf)


def test_v2_backend_unified_keys_alone_delegate_their_controller(fake_v2):
    """runc enables the controllers in every ancestor's cgroup.subtree_control: a
    linux.resources.unified key such as pids.max needs pids delegated, or the
    kernel has no pids.max in the container's cgroup."""
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/uni", owned=True)
    leaf = os.path.join(mount, "ocirt", "uni")
    kernel_files(os.path.join(mount, "ocirt"), ("cgroup.subtree_control",))
    kernel_files(leaf, V2_CHILD_FILES + ("memory.high",))
    try:
        cgroup.apply(plan_resources({"unified": {"pids.max": "10", "memory.high": "4096"}}, layout), layout)
        assert read(os.path.join(leaf, "pids.max")) == "10"
        for directory in (mount, os.path.join(mount, "ocirt")):
            tokens = set(read(os.path.join(directory, "cgroup.subtree_control")).split())
            assert {"+pids", "+memory"} <= tokens, (directory, tokens)
    finally:
        remove_files(leaf)
        cgroup.destroy()


def test_v2_backend_bfq_weight_gets_the_weight_unconverted(fake_v2):
    """With BFQ, a v2 cgroup has io.bfq.weight (range 1-1000, like blkio.weight):
    runc writes blockIO.weight there as it is, and converts to the 1-10000 range
    only for io.weight."""
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/bfq", owned=True)
    leaf = os.path.join(mount, "ocirt", "bfq")
    kernel_files(os.path.join(mount, "ocirt"), ("cgroup.subtree_control",))
    kernel_files(leaf, ("io.bfq.weight", "cgroup.subtree_control", "cgroup.procs"))
    try:
        cgroup.apply(plan_resources({"blockIO": {"weight": 500}}, layout), layout)
        assert read(os.path.join(leaf, "io.bfq.weight")) == "500"
    finally:
        remove_files(leaf)
        cgroup.destroy()


def test_runtime_parent_constant():
    assert RUNTIME_PARENT == "/ocirt"


# ------------------------------------------------------------------------------------
# kill --all and the freezer, against a directory shaped like a v2 cgroup
# ------------------------------------------------------------------------------------

def test_sigkill_to_all_goes_through_cgroup_kill(tmp_path, monkeypatch):
    """cgroup.kill (Linux 5.14) kills what forks meanwhile too; no pid is signalled one by one."""
    touch(str(tmp_path / "cgroup.kill"))
    touch(str(tmp_path / "cgroup.procs"), "4242\n4343\n")
    signalled = []
    monkeypatch.setattr(cgroup_module.os, "kill", lambda pid, signum: signalled.append((pid, signum)))
    Cgroup({"unified": str(tmp_path)}, [], "v2").signal_all(signal.SIGKILL)
    assert read(str(tmp_path / "cgroup.kill")) == "1"
    assert signalled == []


def test_other_signals_and_kernels_without_cgroup_kill_signal_each_pid(tmp_path, monkeypatch):
    touch(str(tmp_path / "cgroup.procs"), "4242\n4343\n")
    signalled = []
    monkeypatch.setattr(cgroup_module.os, "kill", lambda pid, signum: signalled.append((pid, signum)))
    Cgroup({"unified": str(tmp_path)}, [], "v2").signal_all(signal.SIGKILL)
    assert signalled == [(4242, signal.SIGKILL), (4343, signal.SIGKILL)]
    touch(str(tmp_path / "cgroup.kill"))
    del signalled[:]
    Cgroup({"unified": str(tmp_path)}, [], "v2").signal_all(signal.SIGTERM)
    assert read(str(tmp_path / "cgroup.kill")) == ""
    assert signalled == [(4242, signal.SIGTERM), (4343, signal.SIGTERM)]


def test_a_v2_freeze_that_never_completes_is_undone_and_reported(tmp_path, monkeypatch):
    touch(str(tmp_path / "cgroup.freeze"), "0")
    touch(str(tmp_path / "cgroup.events"), "populated 1\nfrozen 0\n")
    monkeypatch.setattr(cgroup_module, "FREEZE_WAIT_SECONDS", 0.05)
    cgroup = Cgroup({"unified": str(tmp_path)}, [], "v2")
    expect_error(lambda: cgroup.freeze(True), str(tmp_path), "did not freeze")
    assert read(str(tmp_path / "cgroup.freeze")) == "0"
    assert not cgroup.is_frozen()


def test_a_v2_freeze_waits_for_cgroup_events(tmp_path):
    touch(str(tmp_path / "cgroup.freeze"), "0")
    touch(str(tmp_path / "cgroup.events"), "populated 1\nfrozen 1\n")
    cgroup = Cgroup({"unified": str(tmp_path)}, [], "v2")
    cgroup.freeze(True)
    assert read(str(tmp_path / "cgroup.freeze")) == "1"
    assert cgroup.is_frozen()


# ------------------------------------------------------------------------------------
# controllers delegated down the v2 tree
# ------------------------------------------------------------------------------------

def _refuse_subtree_control(monkeypatch, errno_value, where):
    real = cgroup_module._write_file

    def write(path, value):
        if path == os.path.join(where, "cgroup.subtree_control"):
            raise OSError(errno_value, os.strerror(errno_value), path)
        return real(path, value)
    monkeypatch.setattr(cgroup_module, "_write_file", write)


def test_a_parent_with_processes_cannot_delegate_and_says_why(fake_v2, monkeypatch):
    mount, layout = fake_v2
    os.mkdir(os.path.join(mount, "busy"))
    kernel_files(os.path.join(mount, "busy"), ("cgroup.subtree_control", "cgroup.procs", "cgroup.controllers"))
    cgroup = Cgroup.create(layout, "/busy/ctr", owned=False)
    kernel_files(os.path.join(mount, "busy", "ctr"))
    _refuse_subtree_control(monkeypatch, 16, os.path.join(mount, "busy"))  # EBUSY
    try:
        message = expect_error(lambda: cgroup.apply(plan_resources({"pids": {"limit": 5}}, layout), layout),
                               os.path.join(mount, "busy"), "processes", "linux.resources.pids.limit",
                               "linux.cgroupsPath")
        assert "pids" in message
    finally:
        remove_files(os.path.join(mount, "busy", "ctr"))
        cgroup.destroy()


def test_a_controller_not_delegated_from_above_is_named(fake_v2, monkeypatch):
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/nodeleg", owned=True)
    parent = os.path.join(mount, "ocirt")
    kernel_files(parent, ("cgroup.subtree_control",))
    touch(os.path.join(parent, "cgroup.controllers"), "pids\n")
    kernel_files(os.path.join(parent, "nodeleg"))
    _refuse_subtree_control(monkeypatch, 2, parent)  # ENOENT: the kernel's answer to an unknown controller
    try:
        message = expect_error(lambda: cgroup.apply(plan_resources({"memory": {"limit": MB}}, layout), layout),
                               parent, "memory controller is not delegated", "linux.resources.memory.limit")
        assert "(it has: pids)" in message, message
    finally:
        remove_files(os.path.join(parent, "nodeleg"))
        cgroup.destroy()


def test_destroy_removes_the_cgroups_the_container_made_below_its_own(fake_v2):
    """Through a writable cgroup mount a container may make cgroups of its own: they go with it."""
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/ocirt/nest", owned=True)
    leaf = os.path.join(mount, "ocirt", "nest")
    os.makedirs(os.path.join(leaf, "sub", "deeper"))
    os.makedirs(os.path.join(leaf, "other"))
    cgroup.destroy()
    assert not os.path.exists(leaf)


def test_destroy_leaves_another_containers_cgroup_below_a_parent_it_made(fake_v2):
    mount, layout = fake_v2
    cgroup = Cgroup.create(layout, "/pod/web", owned=False)
    neighbour = os.path.join(mount, "pod", "db")
    os.mkdir(neighbour)
    cgroup.destroy()
    assert not os.path.exists(os.path.join(mount, "pod", "web"))
    assert os.path.isdir(neighbour)
    # The same when a crashed create's record lists the parent among its directories.
    again = Cgroup.create(layout, "/pod/web", owned=False)
    Cgroup({"0": os.path.join(mount, "pod"), "1": os.path.join(mount, "pod", "web")},
           [os.path.join(mount, "pod"), os.path.join(mount, "pod", "web")], None).destroy()
    assert os.path.isdir(neighbour) and not os.path.exists(os.path.join(mount, "pod", "web"))
    assert again.dirs
