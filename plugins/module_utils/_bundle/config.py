# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""config.json from oci_bundle's options: the default config, the image's, the task's.

Precedence, lowest first: spec.default_config() (what `runc spec` writes),
the image config (Entrypoint+Cmd, Env, WorkingDir, User), the task's named
options (env_file's variables before env's), and last the task's `config` dict merged over everything for
fields the options do not name. The result is validated by spec.validate.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import env_file, users
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio, spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import is_digits, parse_size

CPU_PERIOD = 100000


def _env_dict(entries):
    result = {}
    for entry in entries or []:
        key, value = entry.partition("=")[::2]
        result[key] = value
    return result


def _user(value, field, resolve_user=None):
    """process.user from 1000, '1000:1000', 'name', 'name:group': through RESOLVE_USER (users.resolve_in
    bound to the rootfs) when given; without it (no rootfs yet) a name stays unresolved as uid 0."""
    if resolve_user is not None:
        return resolve_user(value, field)
    text = str(value)
    if not users.is_numeric(text):
        return {"uid": 0, "gid": 0}
    uid, _sep, gid = text.partition(":")
    if not is_digits(uid) or (gid and not is_digits(gid)):
        raise OCIError("%s: %r must be numeric, uid or uid:gid" % (field, value))
    return {"uid": int(uid), "gid": int(gid) if gid else 0}


def build_config(options, image_config=None, rootfs_path="rootfs", resolve_user=None):
    """The config.json dict for OPTIONS (oci_bundle's, None meaning unset).

    RESOLVE_USER(value, field): process.user for a user option, names looked up in the image.
    """
    config = spec.default_config()
    config["root"]["path"] = rootfs_path
    process = config["process"]
    image = image_config or {}
    if image.get("Env"):
        env = _env_dict(process["env"])
        env.update(_env_dict(image["Env"]))
        process["env"] = ["%s=%s" % item for item in env.items()]
    image_args = list(image.get("Entrypoint") or []) + list(image.get("Cmd") or [])
    if image_args:
        process["args"] = image_args
    if image.get("WorkingDir"):
        process["cwd"] = image["WorkingDir"]
    if image.get("User") and (resolve_user is not None or is_digits(str(image["User"]).partition(":")[0])):
        process["user"] = _user(image["User"], "image User", resolve_user)

    if options.get("args") is not None:
        process["args"] = list(options["args"])
    if options.get("env_file"):
        env = _env_dict(process["env"])
        env.update(env_file.read_all(options["env_file"]))
        process["env"] = ["%s=%s" % item for item in env.items()]
    if options.get("env"):
        env = _env_dict(process["env"])
        env.update(env_file.option_entries(options["env"]))
        process["env"] = ["%s=%s" % item for item in env.items()]
    if options.get("cwd") is not None:
        process["cwd"] = options["cwd"]
    if options.get("user") is not None:
        process["user"] = _user(options["user"], "user", resolve_user)
    if options.get("terminal") is not None:
        process["terminal"] = options["terminal"]
    if options.get("hostname") is not None:
        config["hostname"] = options["hostname"]
    if options.get("readonly_rootfs") is not None:
        config["root"]["readonly"] = options["readonly_rootfs"]
    _apply_capabilities(process, options.get("capabilities"))
    _apply_mounts(config, options.get("mounts"))
    linux = config["linux"]
    if options.get("namespaces") is not None:
        linux["namespaces"] = _namespaces(options["namespaces"])
    if options.get("devices"):
        linux["devices"] = [dict(device) for device in options["devices"]]
    if options.get("sysctl"):
        linux["sysctl"] = dict((str(k), str(v)) for k, v in options["sysctl"].items())
    if options.get("annotations"):
        config["annotations"] = dict((str(k), str(v)) for k, v in options["annotations"].items())
    if options.get("cgroups_path"):
        linux["cgroupsPath"] = options["cgroups_path"]
    _apply_resources(linux["resources"], options)
    if options.get("config"):
        config = jsonio.merge(config, options["config"])
    spec.validate(config)
    return config


def _apply_capabilities(process, capabilities):
    if not capabilities:
        return
    add = capabilities.get("add") or []
    drop = capabilities.get("drop") or []
    for field, names in (("capabilities.add", add), ("capabilities.drop", drop)):
        for name in names:
            if name.upper() != "ALL" and _cap_name(name) not in spec.CAPABILITY_NUMBERS:
                raise OCIError("%s: unknown capability %r" % (field, name))
    sets = process["capabilities"]
    for set_name in ("bounding", "effective", "permitted"):
        current = list(sets.get(set_name) or [])
        if any(name.upper() == "ALL" for name in drop):
            current = []
        else:
            current = [c for c in current if c not in [_cap_name(n) for n in drop]]
        if any(name.upper() == "ALL" for name in add):
            current = list(spec.CAPABILITIES)
        else:
            current.extend(_cap_name(n) for n in add if _cap_name(n) not in current)
        sets[set_name] = current


def _cap_name(name):
    name = name.upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def _apply_mounts(config, mounts):
    """The task's mounts replace default mounts at the same destination and follow the rest."""
    if not mounts:
        return
    wanted = []
    for mount in _checked_mounts(mounts):
        entry = {"destination": mount["destination"]}
        kind = _mount_kind(mount)
        if kind:
            entry["type"] = kind
        if mount.get("source"):
            entry["source"] = mount["source"]
        options = list(mount.get("options") or [])
        if kind == "bind" and not any(o in ("bind", "rbind") for o in options):
            options.insert(0, "rbind")
        if options:
            entry["options"] = options
        wanted.append(entry)
    destinations = set(m["destination"] for m in wanted)
    config["mounts"] = [m for m in config["mounts"] if m["destination"] not in destinations] + wanted


def _mount_kind(mount):
    return mount.get("type") or ("bind" if mount.get("source") else None)


def _binds(mount):
    return _mount_kind(mount) == "bind" or any(o in ("bind", "rbind") for o in mount.get("options") or [])


def _checked_mounts(mounts):
    """MOUNTS, each checked as spec.validate checks config.json's: here, so that an error names the
    option's own index; in config.json the default mounts come first and would shift it."""
    check = spec.Checker()
    for index, mount in enumerate(check.objects(mounts, "mounts")):
        spec.validate_mount(check, mount, "mounts[%d]" % index)
        if _binds(mount) and not mount.get("source"):
            check.fail("mounts[%d].source" % index, "required for a bind mount")
        if not _mount_kind(mount) and not _binds(mount):
            check.fail("mounts[%d].type" % index, "required for a mount without a source (tmpfs, proc, ...)")
    return mounts


def check_mount_sources(mounts, bundle):
    """OCIError naming mounts[N].source for a bind mount whose source is missing on this host (relative to
    BUNDLE, as the runtime reads it): found now, before the bundle changes, rather than when the
    container is created, where config.json's index of the mount is not the option's."""
    for index, mount in enumerate(mounts or []):
        if not _binds(mount) or not mount.get("source"):
            continue
        source = os.path.join(bundle, mount["source"])
        try:
            os.stat(source)
        except OSError as exc:
            raise OCIError("mounts[%d].source %s: %s" % (index, source, exc.strerror))


def _namespaces(value):
    """A list of types, or of {type, path} dicts."""
    result = []
    for index, entry in enumerate(value):
        if isinstance(entry, str):
            result.append({"type": entry})
        elif isinstance(entry, dict) and entry.get("type"):
            result.append(dict((k, v) for k, v in entry.items() if k in ("type", "path") and v))
        else:
            raise OCIError("namespaces[%d]: must be a type name or {type, path}" % index)
    return result


def _apply_resources(resources, options):
    memory = {}
    if options.get("memory") is not None:
        memory["limit"] = parse_size(options["memory"], "memory")
    if options.get("memory_swap") is not None:
        memory["swap"] = parse_size(options["memory_swap"], "memory_swap")
    if options.get("memory_reservation") is not None:
        memory["reservation"] = parse_size(options["memory_reservation"], "memory_reservation")
    if memory:
        resources["memory"] = memory
    cpu = {}
    if options.get("cpus") is not None:
        try:
            cpus = float(options["cpus"])
        except (TypeError, ValueError):
            cpus = -1
        if cpus <= 0:
            raise OCIError("cpus: must be a positive number of CPUs such as 1.5, not %r" % options["cpus"])
        cpu.update(quota=int(cpus * CPU_PERIOD), period=CPU_PERIOD)
    if options.get("cpu_shares") is not None:
        cpu["shares"] = int(options["cpu_shares"])
    if options.get("cpuset_cpus") is not None:
        cpu["cpus"] = str(options["cpuset_cpus"])
    if cpu:
        resources["cpu"] = cpu
    if options.get("pids_limit") is not None:
        resources["pids"] = {"limit": int(options["pids_limit"])}
