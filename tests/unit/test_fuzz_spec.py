"""A bounded mutation fuzzer: whatever a config.json or a linux.resources holds, the core answers
with OCIError (a message naming the field) and never with another exception.

Seeded with the standard library's random (fixed seeds: a failure reproduces exactly). Each case
applies a few mutations to spec.default_config(): a value replaced by one of a pool of awkward
values (wrong types, edge integers, NUL, lone surrogates, huge strings, empty containers), a key
removed or added, a list entry duplicated; some cases also damage the serialized bytes. The
mutated config goes through spec.validate and, written to disk, through spec.load_bundle.
plan_resources and plan_devices get random resources objects on v1, hybrid and v2 layouts.
Every exception that is not OCIError is collected with the mutations that led to it.
"""
import copy
import json
import os
import random

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.plan import plan_devices, plan_resources
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import devices, kernel_settings, mounts, process
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Hierarchy, Layout
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# Thousands of mutated configs: seconds each, so `make check` leaves these out (-m "not slow").
pytestmark = pytest.mark.slow

ITERATIONS = 3000
CONFIG_ITERATIONS = 10000  # validate alone is cheap: more cases find rarer combinations
SHOWN = 8  # failing examples quoted in an assertion message

AWKWARD = [
    None, True, False, 0, 1, -1, 7, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1,
    2 ** 64, -2 ** 63, 10 ** 30, -10 ** 30, 2 ** 1000, 0.5, -0.0, 1e308, float("inf"), float("nan"),
    "", " ", "a", "/", "//", "/..", "../../..", "/proc/self/fd/3", "\u0000", "a\u0000b", "\ud800", "\udcff",
    "\u2028", "x" * 5000, "-1", "0", "max", "RLIMIT_NOFILE", "CAP_SYS_ADMIN", "rbind", "bind", "tmpfs",
    "user", "mount", "pid", "c", "b", "p", "rwm", "2MB",
    [], [None], [1, 2], ["a"], [{}], [[]], {}, {"": None}, {"a": 1}, {"type": "pid"}, {"path": "/x"},
]
INT_EDGES = [0, 1, -1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1,
             2 ** 64, -2 ** 63, 10 ** 30]
STRING_EDGES = ["", "/", "..", "/../../..", "/proc/self/fd/3", "a\u0000b", "\ud800", "\udcff", "\u2028", "x" * 5000,
                "a b", "=", "-", "CAP_SYS_ADMIN", "RLIMIT_AS", "rbind", "tmpfs", "\\"]
KEYS = ["type", "path", "destination", "source", "options", "uid", "gid", "size", "hostID", "containerID",
        "soft", "hard", "major", "minor", "allow", "access", "limit", "weight", "rate", "args", "env", "cwd",
        "x-unknown", "", "\u0000"]


def awkward(rng):
    value = rng.choice(AWKWARD)
    return copy.deepcopy(value)


def paths_of(value, prefix=(), limit=None):
    """Every path in VALUE, the tuple of keys/indexes leading to a node; not below LIMIT levels if given
    (a drawn value may nest thousands deep)."""
    found = [prefix]
    if limit is not None and len(prefix) >= limit:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(paths_of(item, prefix + (key,), limit))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(paths_of(item, prefix + (index,), limit))
    return found


def get(value, path):
    for step in path:
        value = value[step]
    return value


def retyped(node):
    """The same content in another shape: a dict's values as a list, a list as a dict, a scalar in a list."""
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return dict((str(i), v) for i, v in enumerate(node))
    return [node]


def mutate(rng, document, log):
    """Apply one random mutation to DOCUMENT in place (the root is replaced only through the return)."""
    paths = paths_of(document)
    path = rng.choice(paths)
    operation = rng.choice(["replace", "replace", "edge", "edge", "delete", "add", "duplicate", "retype", "null"])
    if not path:
        if operation in ("replace", "retype"):
            log.append(("root", "replace"))
            return awkward(rng)
        path = ()
    if path:
        parent = get(document, path[:-1])
        last = path[-1]
    node = get(document, path)
    if operation == "replace" and path:
        value = awkward(rng)
        parent[last] = value
        log.append((path, "=", value if not isinstance(value, str) or len(value) < 40 else value[:10] + "..."))
    elif operation == "edge" and path and isinstance(node, (int, str)) and not isinstance(node, bool):
        # A value of the same type, at an edge: passes the type checks, tests the range checks and the consumers.
        value = rng.choice(INT_EDGES if isinstance(node, int) else STRING_EDGES)
        parent[last] = value
        log.append((path, "=", value if not isinstance(value, str) or len(value) < 40 else value[:10] + "..."))
    elif operation == "null" and path:
        # JSON null where an object or list is optional: runc's decoder takes it as absent.
        parent[last] = None
        log.append((path, "= null"))
    elif operation == "delete" and path:
        del parent[last]
        log.append((path, "deleted"))
    elif operation == "add" and isinstance(node, dict):
        key = rng.choice(KEYS)
        value = awkward(rng)
        node[key] = value
        log.append((path + (key,), "added", value if not isinstance(value, str) or len(value) < 40 else "..."))
    elif operation == "add" and isinstance(node, list):
        value = awkward(rng)
        node.insert(rng.randint(0, len(node)), value)
        log.append((path, "inserted", value if not isinstance(value, str) or len(value) < 40 else "..."))
    elif operation == "duplicate" and isinstance(node, list) and node:
        node.append(copy.deepcopy(rng.choice(node)))
        log.append((path, "duplicated an entry"))
    elif operation == "retype" and path:
        parent[last] = retyped(node)
        log.append((path, "retyped"))
    return document


def mutated_config(rng, log):
    config = spec.default_config(args=["sh", "-c", "true"])
    config["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]}
    config["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    config["linux"]["namespaces"].append({"type": "user"})
    config["process"]["user"]["additionalGids"] = [5, 10]
    config["process"]["rlimits"].append({"type": "RLIMIT_CORE", "soft": 0, "hard": 0})
    for dummy in range(rng.randint(1, 4)):
        config = mutate(rng, config, log)
    return config


def damage(rng, data, log):
    """Byte-level damage to serialized JSON."""
    choice = rng.choice(["truncate", "flip", "insert", "bom", "nul"])
    if choice == "truncate" and data:
        cut = rng.randint(0, len(data) - 1)
        log.append(("bytes", "truncated at", cut))
        return data[:cut]
    if choice == "flip" and data:
        position = rng.randrange(len(data))
        byte = rng.choice([0x00, 0x80, 0xff, 0xc3, 0x22, 0x5c, 0x7b, 0x5d])
        log.append(("bytes", "byte %d set to" % position, byte))
        return data[:position] + bytes([byte]) + data[position + 1:]
    if choice == "insert":
        position = rng.randint(0, len(data))
        piece = rng.choice([b"\\ud800", b"\\u0000", b"NaN", b"-Infinity", b"1e999", b"[" * 50, b",", b"\xed\xa0\x80"])
        log.append(("bytes", "inserted at %d" % position, piece))
        return data[:position] + piece + data[position:]
    if choice == "bom":
        log.append(("bytes", "utf-8 BOM"))
        return b"\xef\xbb\xbf" + data
    log.append(("bytes", "NUL appended"))
    return data + b"\0"


def serialize(config):
    return json.dumps(config, allow_nan=True).encode("utf-8", "surrogatepass")


def record(failures, case, exc, log):
    failures.append("case %d: %s: %s\n    mutations: %r" % (case, type(exc).__name__, exc, log))


def examples(failures):
    """One failing example per kind of exception (type and message), at most SHOWN."""
    seen = {}
    for failure in failures:
        kind = failure.split("\n")[0].split(": ", 1)[1][:70]
        seen.setdefault(kind, failure)
    return "\n".join(list(seen.values())[:SHOWN])


def test_validate_raises_only_oci_error():
    rng = random.Random(20240501)
    failures = []
    refused = 0
    for case in range(ITERATIONS):
        log = []
        config = mutated_config(rng, log)
        try:
            spec.validate(config)
        except OCIError:
            refused += 1
        except Exception as exc:  # noqa: B902 - any other exception is the finding
            record(failures, case, exc, log)
    assert not failures, "%d of %d mutated configs raised something else than OCIError:\n%s" % (
        len(failures), ITERATIONS, examples(failures))
    # The fuzzer did exercise refusals (and acceptances): not everything is rejected at the first field.
    assert ITERATIONS // 10 < refused < ITERATIONS


def consume(config):
    """What create and the container's process read from a validated config without privileges,
    and the strings they hand to the kernel (which takes bytes: execve, chdir, sethostname, open)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup.namespaces import NamespacePlan
    plan = NamespacePlan(config)
    kernel_settings.check(config, plan)
    linux = config.get("linux") or {}
    for index, mount in enumerate(config.get("mounts") or []):
        mounts.parse_options(mount.get("options"), "mounts[%d].options" % index)
    devices.runtime_populates_dev(config.get("mounts"))
    proc = config["process"]
    process.environment(proc.get("env"))
    (config.get("hooks") or {}).get("createContainer")  # as create.py and container_init.py read it
    strings = list(proc["args"]) + list(proc.get("env") or [])
    strings += [proc["cwd"], config.get("hostname") or "", config["root"]["path"]]
    strings += [m["destination"] for m in config.get("mounts") or []]
    strings += list(linux.get("sysctl") or {}) + list((linux.get("sysctl") or {}).values())
    for text in strings:
        os.fsencode(text)
        if "\0" in text:
            raise ValueError("NUL in %r" % text)
    user = proc.get("user") or {}
    for key in ("uid", "gid"):
        if user.get(key) == 2 ** 32 - 1:
            raise ValueError("process.user.%s 4294967295 is (uid_t)-1: setresuid/setresgid leave the id unchanged"
                             % key)
    for rlimit in proc.get("rlimits") or []:
        for key in ("soft", "hard"):
            if not 0 <= rlimit[key] <= 2 ** 64 - 1:
                raise ValueError("rlimit %s %d is not a uint64" % (key, rlimit[key]))


def test_accepted_configs_can_be_consumed():
    """A config validate accepts must not make the code that reads it next raise anything but OCIError,
    nor hold values the kernel would read as something else."""
    rng = random.Random(20240503)
    failures = []
    accepted = 0
    for case in range(CONFIG_ITERATIONS):
        log = []
        config = mutated_config(rng, log)
        try:
            spec.validate(config)
        except OCIError:
            continue
        accepted += 1
        try:
            consume(config)
        except OCIError:
            pass
        except Exception as exc:  # noqa: B902
            record(failures, case, exc, log)
    assert accepted > CONFIG_ITERATIONS // 10
    assert not failures, "%d of %d accepted configs cannot be consumed:\n%s" % (
        len(failures), accepted, examples(failures))


def test_load_bundle_raises_only_oci_error(tmp_path):
    rng = random.Random(20240502)
    bundle = str(tmp_path)
    os.mkdir(os.path.join(bundle, "rootfs"))
    failures = []
    for case in range(ITERATIONS):
        log = []
        config = mutated_config(rng, log)
        try:
            data = serialize(config)
        except (TypeError, ValueError, UnicodeError):
            continue  # not representable as JSON: no config.json can hold it
        if rng.random() < 0.3:
            data = damage(rng, data, log)
        with open(os.path.join(bundle, "config.json"), "wb") as handle:
            handle.write(data)
        try:
            spec.load_bundle(bundle)
        except OCIError:
            pass
        except Exception as exc:  # noqa: B902
            record(failures, case, exc, log)
    assert not failures, "%d of %d config.json files raised something else than OCIError:\n%s" % (
        len(failures), ITERATIONS, examples(failures))


# -- linux.resources --------------------------------------------------------------------------

HOST_V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd")
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")


def layouts():
    v1 = [Hierarchy("/sys/fs/cgroup/" + c.replace("name=", ""), "/", 1, [c]) for c in HOST_V1]
    unified = Hierarchy("/sys/fs/cgroup/unified", "/", 2, [])
    v2 = Hierarchy("/sys/fs/cgroup", "/", 2, [])
    return {
        "hybrid": Layout(v1 + [unified], unified_controllers=["hugetlb"]),
        "v1": Layout(v1, unified_controllers=[]),
        "v2": Layout([v2], unified_controllers=list(V2_CONTROLLERS)),
        "none": Layout([], unified_controllers=[]),
    }


RESOURCE_SHAPES = {
    "memory": ["limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
               "useHierarchy", "checkBeforeUpdate"],
    "cpu": ["shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle"],
    "pids": ["limit"],
    "blockIO": ["weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"],
    "network": ["classID", "priorities"],
    "rdma": ["mlx5_1", "hca"],
    "unified": ["memory.high", "cpu.weight", "pids.max", "io.max", "cgroup.freeze", "../escape", ".hidden"],
}
DEVICE_ENTRY_KEYS = ["major", "minor", "weight", "leafWeight", "rate", "name", "priority", "hcaHandles",
                     "hcaObjects"]


def random_scalar(rng):
    if rng.random() < 0.6:
        return awkward(rng)
    return rng.choice([0, 1, 2, 10, 100, 1000, 4096, 100000, -1, "1-2", "0", "2MB", "eth0", "max", True])


def random_entry(rng):
    entry = {}
    for key in rng.sample(DEVICE_ENTRY_KEYS, rng.randint(0, 4)):
        entry[key] = random_scalar(rng)
    return entry


def random_resources(rng):
    resources = {}
    for section in rng.sample(sorted(RESOURCE_SHAPES), rng.randint(1, 4)):
        if rng.random() < 0.1:
            resources[section] = random_scalar(rng)
            continue
        body = {}
        for key in rng.sample(RESOURCE_SHAPES[section], rng.randint(0, len(RESOURCE_SHAPES[section]))):
            if key in ("weightDevice", "priorities") or key.startswith("throttle"):
                body[key] = [random_entry(rng) for dummy in range(rng.randint(0, 3))]
            elif section == "rdma":
                body[key] = random_entry(rng) if rng.random() < 0.8 else random_scalar(rng)
            else:
                body[key] = random_scalar(rng)
        resources[section] = body
    if rng.random() < 0.3:
        resources["hugepageLimits"] = [{"pageSize": random_scalar(rng), "limit": random_scalar(rng)}
                                       for dummy in range(rng.randint(0, 2))]
    if rng.random() < 0.1:
        resources = random_scalar(rng)
    return resources


def random_device_rules(rng):
    if rng.random() < 0.1:
        return random_scalar(rng)
    rules = []
    for dummy in range(rng.randint(0, 4)):
        rule = {}
        for key in rng.sample(["allow", "type", "major", "minor", "access"], rng.randint(0, 5)):
            rule[key] = random_scalar(rng) if rng.random() < 0.5 else rng.choice(
                {"allow": [True, False], "type": ["a", "c", "b", "u"], "major": [-1, 1, 5, 2 ** 32],
                 "minor": [None, 0, 3], "access": ["r", "rw", "rwm", "x", ""]}[key])
        rules.append(rule if rng.random() < 0.95 else random_scalar(rng))
    return rules


@pytest.mark.parametrize("layout_name", ["hybrid", "v1", "v2", "none"])
def test_plan_resources_and_devices_raise_only_oci_error(layout_name):
    layout = layouts()[layout_name]
    rng = random.Random("resources-" + layout_name)
    failures = []
    planned = 0
    for case in range(ITERATIONS):
        resources = random_resources(rng)
        try:
            writes = plan_resources(resources, layout)
            planned += 1
            assert all(isinstance(w.value, str) for w in writes), writes
        except OCIError:
            pass
        except Exception as exc:  # noqa: B902
            record(failures, case, exc, [("resources", resources)])
        rules = random_device_rules(rng)
        try:
            plan_devices(rules, layout)
        except OCIError:
            pass
        except Exception as exc:  # noqa: B902
            record(failures, case, exc, [("devices", rules)])
    assert not failures, "%d failures on layout %s:\n%s" % (len(failures), layout_name, examples(failures))
    assert planned > 0
