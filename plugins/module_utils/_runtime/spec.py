# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""config.json: the default configuration, loading, and validation.

Validation checks what the core uses and names the field at fault
(``process.args: must be a non-empty list of strings``). Unknown fields and
annotations are ignored, as the runtime spec requires.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# The type hints are for mypy (`make check`). Names from `typing` exist for it alone, so a hint that
# uses one is a string: importing typing would add to every `ocirt` command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Collection, NoReturn, Sequence

OCI_VERSION = "1.0.2"

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                "unbindable", "runbindable")
DEVICE_TYPES = ("c", "b", "u", "p")
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAPABILITY_NUMBERS = dict((name, number) for number, name in enumerate(CAPABILITIES))

_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_config(args: "Sequence[str] | None" = None, terminal: bool = False) -> "dict[str, Any]":
    """A config equivalent to `runc spec`'s, with root.path "rootfs"."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args else ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": dict((name, list(_DEFAULT_CAPS))
                                 for name in ("bounding", "effective", "permitted")),
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ocirt",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def load_bundle(bundle: str) -> "tuple[dict[str, Any], str]":
    """Read and validate BUNDLE/config.json; return (config, rootfs path resolved once)."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise OCIError("cannot read %s: %s" % (path, exc.strerror))
    try:
        config = jsonio.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise OCIError("%s: malformed JSON: %s" % (path, exc))
    return checked_bundle_config(bundle, config)


def checked_bundle_config(bundle: str, config: "Any") -> "tuple[dict[str, Any], str]":
    """CONFIG validated as load_bundle validates config.json, with root.path resolved against BUNDLE.

    For a caller that makes the config itself (the Ansible glue adds what it
    owns to the bundle's config, as podman writes its own bundle): the same
    checks, and a new object, so the caller's stays as it was.
    """
    bundle = os.path.abspath(bundle)
    config = without_nulls(config)
    validate(config)
    root = config["root"]["path"]
    rootfs = os.path.realpath(os.path.join(bundle, root))
    if not os.path.isdir(rootfs):
        raise OCIError("root.path: %s is not a directory" % os.path.join(bundle, root))
    return config, rootfs


def without_nulls(value: "Any", depth: int = 0) -> "Any":
    """VALUE with null members of objects dropped: the spec's optional fields, null or absent, mean the same.

    Only as deep as the spec's own structure goes: deeper is some unknown
    field's content, which is ignored anyway (and may be nested beyond recursion).
    """
    if depth > 16:
        return value
    if isinstance(value, dict):
        return dict((key, without_nulls(item, depth + 1)) for key, item in value.items() if item is not None)
    if isinstance(value, list):
        return [without_nulls(item, depth + 1) for item in value]
    return value


class Checker:
    """Walks a config, collecting nothing: the first fault raises OCIError naming its field."""

    @staticmethod
    def fail(field: str, message: str) -> "NoReturn":
        raise OCIError("%s: %s" % (field, message))

    def obj(self, value: "Any", field: str, required: bool = False) -> "dict[str, Any]":
        if value is None:
            if required:
                self.fail(field, "is required")
            return {}
        if not isinstance(value, dict):
            self.fail(field, "must be an object")
        return value

    def string(self, value: "Any", field: str, required: bool = False, absolute: bool = False) -> None:
        if value is None:
            if required:
                self.fail(field, "is required")
            return
        if not isinstance(value, str):
            self.fail(field, "must be a string")
        if "\0" in value:
            self.fail(field, "must not contain NUL")
        try:
            # \udc80-\udcff carry the raw bytes of a non-UTF-8 name (Python's surrogateescape) and
            # reach the kernel as those bytes; any other lone surrogate could not be encoded at all.
            value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            self.fail(field, "must be valid UTF-8 (it has a lone surrogate)")
        if absolute and not value.startswith("/"):
            self.fail(field, "must be an absolute path")

    def boolean(self, value: "Any", field: str) -> None:
        if value is not None and not isinstance(value, bool):
            self.fail(field, "must be a boolean")

    def integer(self, value: "Any", field: str, required: bool = False,
                minimum: "int | None" = None, maximum: "int | None" = None) -> None:
        if value is None:
            if required:
                self.fail(field, "is required")
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "must be an integer")
        if minimum is not None and value < minimum:
            self.fail(field, "must be at least %d" % minimum)
        if maximum is not None and value > maximum:
            self.fail(field, "must be at most %d" % maximum)

    def strings(self, value: "Any", field: str, non_empty: bool = False, absolute: bool = False) -> "list[str]":
        if value is None:
            if non_empty:
                self.fail(field, "must be a non-empty list of strings")
            return []
        if not isinstance(value, list) or (non_empty and not value) \
                or not all(isinstance(item, str) for item in value):
            self.fail(field, "must be a %slist of strings" % ("non-empty " if non_empty else ""))
        for index, item in enumerate(value):
            self.string(item, "%s[%d]" % (field, index), absolute=absolute)
        return value

    def objects(self, value: "Any", field: str) -> "list[dict[str, Any]]":
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, "must be a list")
        for index, item in enumerate(value):
            self.obj(item, "%s[%d]" % (field, index), required=True)
        return value

    def choice(self, value: "Any", field: str, choices: "Collection[str]") -> None:
        if value is None:
            return
        # A non-string is named by its type: the repr of a deeply nested value would not end.
        if not isinstance(value, str):
            self.fail(field, "must be one of %s, not a %s" % (", ".join(choices), type(value).__name__))
        if value not in choices:
            self.fail(field, "must be one of %s, not %r" % (", ".join(choices), value[:64]))

    def string_map(self, value: "Any", field: str) -> "dict[str, str]":
        value = self.obj(value, field)
        for key, item in value.items():
            if not isinstance(item, str):
                self.fail("%s.%s" % (field, key), "must be a string")
            self.string(key, "%s key %r" % (field, key))
            self.string(item, "%s.%s" % (field, key))
        return value


UINT32_MAX = 0xFFFFFFFF
# (uid_t)-1 means "leave unchanged" to setresuid/setresgid: as an id it would keep root.
ID_MAX = UINT32_MAX - 1
RLIMIT_MAX = (1 << 64) - 1


def validate(config: "Any") -> None:
    """Raise OCIError naming the first field of CONFIG that the core cannot use."""
    check = Checker()
    check.obj(config, "config.json", required=True)
    check.string(config.get("ociVersion"), "ociVersion", required=True)
    root = check.obj(config.get("root"), "root", required=True)
    check.string(root.get("path"), "root.path", required=True)
    if not root.get("path"):
        check.fail("root.path", "must not be empty")
    check.boolean(root.get("readonly"), "root.readonly")
    check.string(config.get("hostname"), "hostname")
    check.string(config.get("domainname"), "domainname")
    check.string_map(config.get("annotations"), "annotations")
    validate_process(check, config.get("process"))
    for index, mount in enumerate(check.objects(config.get("mounts"), "mounts")):
        validate_mount(check, mount, "mounts[%d]" % index)
    _validate_linux(check, check.obj(config.get("linux"), "linux"))
    if config.get("hooks") is not None:  # hooks.py is imported only for a config that has them
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks
        hooks.validate(config["hooks"])
    if config.get("annotations"):
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime import overlay as overlay_root
        overlay = overlay_root.parse_overlay(config["annotations"])
        if overlay is not None and not any(ns.get("type") == "mount" and not ns.get("path") for ns in
                                           (config.get("linux") or {}).get("namespaces") or []
                                           if isinstance(ns, dict)):
            check.fail('annotations["%s"]' % overlay_root.OVERLAY_ANNOTATION,
                       "an overlay root needs a new mount namespace (linux.namespaces: mount)")


def validate_mount(check: Checker, mount: "dict[str, Any]", field: str) -> None:
    check.string(mount.get("destination"), field + ".destination", required=True, absolute=True)
    check.string(mount.get("type"), field + ".type")
    check.string(mount.get("source"), field + ".source")
    check.strings(mount.get("options"), field + ".options")


def validate_process(check: Checker, process: "dict[str, Any]") -> None:
    process = check.obj(process, "process", required=True)
    check.strings(process.get("args"), "process.args", non_empty=True)
    check.strings(process.get("env"), "process.env")
    check.string(process.get("cwd"), "process.cwd", required=True, absolute=True)
    check.boolean(process.get("terminal"), "process.terminal")
    check.boolean(process.get("noNewPrivileges"), "process.noNewPrivileges")
    check.integer(process.get("oomScoreAdj"), "process.oomScoreAdj", minimum=-1000, maximum=1000)
    user = check.obj(process.get("user"), "process.user")
    check.integer(user.get("uid"), "process.user.uid", minimum=0, maximum=ID_MAX)
    check.integer(user.get("gid"), "process.user.gid", minimum=0, maximum=ID_MAX)
    check.integer(user.get("umask"), "process.user.umask", minimum=0, maximum=0o7777)
    gids = user.get("additionalGids")
    if gids is not None:
        if not isinstance(gids, list):
            check.fail("process.user.additionalGids", "must be a list of integers")
        for index, gid in enumerate(gids):
            check.integer(gid, "process.user.additionalGids[%d]" % index, minimum=0, maximum=ID_MAX)
    capabilities = check.obj(process.get("capabilities"), "process.capabilities")
    for name in CAPABILITY_SETS:
        field = "process.capabilities." + name
        for index, cap in enumerate(check.strings(capabilities.get(name), field)):
            if cap not in CAPABILITY_NUMBERS:
                check.fail("%s[%d]" % (field, index), "unknown capability %r" % cap)
    seen = set()
    for index, rlimit in enumerate(check.objects(process.get("rlimits"), "process.rlimits")):
        field = "process.rlimits[%d]" % index
        check.choice(rlimit.get("type"), field + ".type", sorted(RLIMITS))
        check.string(rlimit.get("type"), field + ".type", required=True)
        check.integer(rlimit.get("soft"), field + ".soft", required=True, minimum=0, maximum=RLIMIT_MAX)
        check.integer(rlimit.get("hard"), field + ".hard", required=True, minimum=0, maximum=RLIMIT_MAX)
        if rlimit["soft"] > rlimit["hard"]:
            check.fail(field, "soft limit %d is above the hard limit %d" % (rlimit["soft"], rlimit["hard"]))
        if rlimit["type"] in seen:
            check.fail(field + ".type", "%s is given twice" % rlimit["type"])
        seen.add(rlimit["type"])
    check.string(process.get("apparmorProfile"), "process.apparmorProfile")
    check.string(process.get("selinuxLabel"), "process.selinuxLabel")
    _validate_process_extras(check, process)


IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10,
               "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
MEMORY_POLICY_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
                       "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MEMORY_POLICY_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
                       "MPOL_F_STATIC_NODES": 1 << 15}
CPU_LIST_MAX = 8192  # the kernel's largest NR_CPUS; also bounds node numbers


def _is_number(text: str) -> bool:
    return bool(text) and all(char in "0123456789" for char in text)


def parse_cpu_list(text: str, field: str) -> "set[int]":
    """The set of numbers in a kernel cpu/node list ("0-1,3"); OCIError naming FIELD when malformed."""
    numbers: "set[int]" = set()
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not _is_number(low) or (dash and not _is_number(high)):
            raise OCIError("%s: %r is not a list like \"0-1,3\"" % (field, text))
        first, last = int(low), int(high) if dash else int(low)
        if first > last or last >= CPU_LIST_MAX:
            raise OCIError("%s: bad range %r in %r (numbers are 0-%d, ranges low-high)"
                           % (field, part, text, CPU_LIST_MAX - 1))
        numbers.update(range(first, last + 1))
    return numbers


def _names(check: Checker, value: "Any", field: str, known: "Collection[str]") -> None:
    for index, name in enumerate(check.strings(value, field)):
        if name not in known:
            check.fail("%s[%d]" % (field, index), "unknown flag %r (known: %s)" % (name, ", ".join(sorted(known))))


def _validate_process_extras(check: Checker, process: "dict[str, Any]") -> None:
    """ioPriority, scheduler and execCPUAffinity (applied by sched.py)."""
    io = check.obj(process.get("ioPriority"), "process.ioPriority")
    if io:
        check.string(io.get("class"), "process.ioPriority.class", required=True)
        check.choice(io["class"], "process.ioPriority.class", sorted(IOPRIO_CLASSES))
        check.integer(io.get("priority"), "process.ioPriority.priority", minimum=0, maximum=7)
    sched = check.obj(process.get("scheduler"), "process.scheduler")
    if sched:
        field = "process.scheduler"
        check.string(sched.get("policy"), field + ".policy", required=True)
        check.choice(sched["policy"], field + ".policy", sorted(SCHED_POLICIES))
        check.integer(sched.get("nice"), field + ".nice", minimum=-20, maximum=19)
        check.integer(sched.get("priority"), field + ".priority", minimum=0, maximum=99)
        if sched["policy"] in ("SCHED_FIFO", "SCHED_RR") and not sched.get("priority"):
            check.fail(field + ".priority", "%s needs a priority from 1 to 99" % sched["policy"])
        if sched["policy"] not in ("SCHED_FIFO", "SCHED_RR") and sched.get("priority"):
            check.fail(field + ".priority", "must be 0 for %s (1-99 is for SCHED_FIFO and SCHED_RR)" % sched["policy"])
        _names(check, sched.get("flags"), field + ".flags", SCHED_FLAGS)
        for key in ("runtime", "deadline", "period"):
            check.integer(sched.get(key), "%s.%s" % (field, key), minimum=0, maximum=(1 << 63) - 1)
        if sched["policy"] == "SCHED_DEADLINE":
            runtime, deadline = sched.get("runtime") or 0, sched.get("deadline") or 0
            period = sched.get("period") or deadline
            if not runtime or not deadline or not runtime <= deadline <= period:
                check.fail(field, "SCHED_DEADLINE needs 0 < runtime <= deadline <= period (period defaults to deadline)")
    affinity = check.obj(process.get("execCPUAffinity"), "process.execCPUAffinity")
    for key in ("initial", "final"):
        field = "process.execCPUAffinity." + key
        check.string(affinity.get(key), field)
        if affinity.get(key) is not None:
            parse_cpu_list(affinity[key], field)


def _validate_linux_extras(check: Checker, linux: "dict[str, Any]") -> None:
    """linux.personality and linux.memoryPolicy (applied by sched.py)."""
    persona = check.obj(linux.get("personality"), "linux.personality")
    if persona:
        check.string(persona.get("domain"), "linux.personality.domain", required=True)
        check.choice(persona["domain"], "linux.personality.domain", sorted(PERSONALITY_DOMAINS))
        _names(check, persona.get("flags"), "linux.personality.flags", {})
    policy = check.obj(linux.get("memoryPolicy"), "linux.memoryPolicy")
    if policy:
        field = "linux.memoryPolicy"
        check.string(policy.get("mode"), field + ".mode", required=True)
        check.choice(policy["mode"], field + ".mode", sorted(MEMORY_POLICY_MODES))
        check.string(policy.get("nodes"), field + ".nodes")
        if policy.get("nodes"):
            parse_cpu_list(policy["nodes"], field + ".nodes")
            if policy["mode"] in ("MPOL_DEFAULT", "MPOL_LOCAL"):
                check.fail(field + ".nodes", "must be empty for %s" % policy["mode"])
        elif policy["mode"] in ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY"):
            check.fail(field + ".nodes", "is required for %s" % policy["mode"])
        _names(check, policy.get("flags"), field + ".flags", MEMORY_POLICY_FLAGS)


def _validate_linux(check: Checker, linux: "dict[str, Any]") -> None:
    seen = set()
    for index, namespace in enumerate(check.objects(linux.get("namespaces"), "linux.namespaces")):
        field = "linux.namespaces[%d]" % index
        check.string(namespace.get("type"), field + ".type", required=True)
        check.choice(namespace.get("type"), field + ".type", NAMESPACE_TYPES)
        check.string(namespace.get("path"), field + ".path", absolute=True)
        if namespace["type"] in seen:
            check.fail(field + ".type", "namespace %s is given twice" % namespace["type"])
        seen.add(namespace["type"])
    for name in ("uidMappings", "gidMappings"):
        for index, mapping in enumerate(check.objects(linux.get(name), "linux." + name)):
            field = "linux.%s[%d]" % (name, index)
            for key in ("containerID", "hostID", "size"):
                check.integer(mapping.get(key), "%s.%s" % (field, key), required=True,
                              minimum=0, maximum=UINT32_MAX)
    for name in ("uidMappings", "gidMappings"):
        if linux.get(name) and "user" not in seen:
            check.fail("linux." + name, "mappings need a user namespace in linux.namespaces")
    for index, device in enumerate(check.objects(linux.get("devices"), "linux.devices")):
        field = "linux.devices[%d]" % index
        check.string(device.get("type"), field + ".type", required=True)
        check.choice(device.get("type"), field + ".type", DEVICE_TYPES)
        check.string(device.get("path"), field + ".path", required=True, absolute=True)
        needs_numbers = device["type"] != "p"
        check.integer(device.get("major"), field + ".major", required=needs_numbers, minimum=0)
        check.integer(device.get("minor"), field + ".minor", required=needs_numbers, minimum=0)
        check.integer(device.get("fileMode"), field + ".fileMode", minimum=0, maximum=0o7777)
        check.integer(device.get("uid"), field + ".uid", minimum=0, maximum=UINT32_MAX)
        check.integer(device.get("gid"), field + ".gid", minimum=0, maximum=UINT32_MAX)
    check.strings(linux.get("maskedPaths"), "linux.maskedPaths", absolute=True)
    check.strings(linux.get("readonlyPaths"), "linux.readonlyPaths", absolute=True)
    check.string_map(linux.get("sysctl"), "linux.sysctl")
    check.choice(linux.get("rootfsPropagation"), "linux.rootfsPropagation", PROPAGATIONS)
    check.string(linux.get("cgroupsPath"), "linux.cgroupsPath")
    check.obj(linux.get("resources"), "linux.resources")
    check.string(linux.get("mountLabel"), "linux.mountLabel")
    _validate_linux_extras(check, linux)
