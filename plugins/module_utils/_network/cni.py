# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CNI protocol (SPEC.md of containernetworking/cni, version 1.0.0): running plugins, the result cache, DEL.

No config.json field is applied here. A plugin is an executable named by
its `type`, found in CNI_PATH, run with CNI_COMMAND, CNI_CONTAINERID,
CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH in a clean environment and its
network configuration on stdin (the list's `name` and `cniVersion`, the
previous plugin's result as `prevResult`, `runtimeConfig` for the
capabilities it declares). ADD runs the list in order, DEL in reverse.

Every attachment is recorded in the container's cache file BEFORE its ADD
runs (as libcni keeps /var/lib/cni/results, but earlier), so that a crash
in the middle of an ADD still leaves what DEL needs; DEL of what was never
made is a success for every conforming plugin.

This file imports the standard library only: besides its use by the
modules, it is copied under the state root and run alone (`python -I -S
cni.py delete ROOT ID`) as the container's poststop hook, so that
`ocirt delete --force` after a crash of the module releases the
container's network too. The monitor is run the same way, for the same reason.
"""
import errno
import os
import signal
import sys
import time

CNI_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
DEFAULT_CNI_PATH = "/usr/lib/cni:/opt/cni/bin"  # defaults.DEFAULT_CNI_PATH: this file runs alone, importing nothing of ours
PLUGIN_TIMEOUT = 120  # seconds one plugin may take; a hung plugin must not hang the task
MAX_OUTPUT = 1 << 20  # bytes of a plugin's stdout that are read as its result
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK_AREA = "=network"  # under the state root; '=' names are the runtime's own, never an id
CACHE_NAME = "cni.json"
NETNS_NAME = "netns"
MNT_DETACH = 2

# The Debian package that brings each plugin: what a missing plugin's error names.
PACKAGES = {"dnsname": "golang-github-containernetworking-plugin-dnsname"}
DEFAULT_PACKAGE = "containernetworking-plugins"


class CNIError(Exception):
    """A plugin failed or answered nonsense; the message names the network and the plugin."""


def container_dir(root, container_id):
    return os.path.join(root, NETWORK_AREA, container_id)


def cache_path(root, container_id):
    return os.path.join(container_dir(root, container_id), CACHE_NAME)


def netns_path(root, container_id):
    return os.path.join(container_dir(root, container_id), NETNS_NAME)


def find_plugin(plugin_type, cni_path, network):
    """The executable of PLUGIN_TYPE in CNI_PATH (dirs joined by ':'), or CNIError naming it and its package."""
    if not isinstance(plugin_type, str) or not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise CNIError("network %s: plugin type %r is not a plugin name" % (network, plugin_type))
    for directory in cni_path.split(":"):
        candidate = os.path.join(directory, plugin_type)
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError("network %s: CNI plugin %r not found in %s: install the Debian package %s"
                   % (network, plugin_type, cni_path, PACKAGES.get(plugin_type, DEFAULT_PACKAGE)))


def _plugin_error(network, plugin_type, command, returncode, stdout, stderr):
    import json
    detail = ""
    try:
        answer = json.loads(stdout.decode("utf-8"))
        if isinstance(answer, dict) and isinstance(answer.get("msg"), str):
            detail = "error %s: %s" % (answer.get("code"), answer["msg"])
            if isinstance(answer.get("details"), str) and answer["details"]:
                detail += " (%s)" % answer["details"]
    except ValueError:
        pass
    if not detail:
        detail = (stderr or stdout).decode("utf-8", "replace").strip()[-500:] or "exit status %d" % returncode
    return CNIError("network %s: CNI %s of plugin %s failed: %s" % (network, command, plugin_type, detail[:2000]))


def invoke(command, plugin, network_config, container_id, netns, ifname, cni_args="", cni_path=DEFAULT_CNI_PATH,
           prev_result=None, runtime_config=None):
    """Run one PLUGIN (a dict of the list's plugins) for COMMAND; the parsed result for ADD, None otherwise."""
    return finish(start(command, plugin, network_config, container_id, netns, ifname, cni_args, cni_path,
                        prev_result, runtime_config))


def start(command, plugin, network_config, container_id, netns, ifname, cni_args="", cni_path=DEFAULT_CNI_PATH,
          prev_result=None, runtime_config=None, path=CLEAN_PATH):
    """Start one plugin for COMMAND, its configuration written to its stdin; finish() collects its answer.

    Started and finished apart, the caller may work while the plugin does (the container is created
    while its first plugin's ADD runs). PATH: the plugin's PATH (the tools it may find)."""
    import json  # here, as subprocess: a poststop hook with nothing to release imports neither
    network = network_config["name"]
    plugin_type = plugin.get("type")
    executable = find_plugin(plugin_type, cni_path, network)
    conf = dict(plugin)
    conf["name"] = network
    conf["cniVersion"] = network_config["cniVersion"]
    if prev_result is not None:
        conf["prevResult"] = prev_result
    wanted = dict((key, value) for key, value in (runtime_config or {}).items()
                  if (plugin.get("capabilities") or {}).get(key))
    if wanted:
        conf["runtimeConfig"] = wanted
    import subprocess  # here: a poststop hook with nothing to release starts without it
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
           "CNI_ARGS": cni_args, "CNI_PATH": cni_path, "PATH": path}
    stdin_r, stdin_w = os.pipe()
    try:
        try:
            process = subprocess.Popen([executable], stdin=stdin_r, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=env, cwd="/")
        except OSError as exc:
            raise CNIError("network %s: cannot run CNI plugin %s: %s" % (network, executable, exc.strerror))
        os.close(stdin_r)
        stdin_r = None
        payload = memoryview(json.dumps(conf).encode("utf-8"))
        # A plugin reads all of its stdin before it writes anything: this cannot block for good.
        while payload:
            payload = payload[os.write(stdin_w, payload):]
    except BrokenPipeError:
        pass  # it exited without reading: its status and stderr say why
    finally:
        for fd in (stdin_r, stdin_w):
            if fd is not None:
                os.close(fd)
    return (process, network, plugin_type, command)


def finish(started):
    """Wait for a plugin start() started: its parsed result for ADD, None otherwise; CNIError when it failed."""
    import subprocess
    process, network, plugin_type, command = started
    try:
        stdout, stderr = process.communicate(timeout=PLUGIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise CNIError("network %s: CNI %s of plugin %s did not answer in %d seconds"
                       % (network, command, plugin_type, PLUGIN_TIMEOUT))
    if process.returncode != 0:
        raise _plugin_error(network, plugin_type, command, process.returncode, stdout, stderr)
    if command != "ADD":
        return None
    return parse_result(stdout[:MAX_OUTPUT + 1], "network %s: plugin %s" % (network, plugin_type))


def abandon(started):
    """Kill and reap a plugin start() started whose answer is no longer wanted (the task failed meanwhile)."""
    process = started[0]
    if process.poll() is None:
        process.kill()
    process.communicate()


def _check(condition, where, what):
    if not condition:
        raise CNIError("%s: result %s" % (where, what))


def parse_result(raw, where):
    """A plugin's ADD result, checked field by field (a plugin's output is not trusted): the dict, or CNIError."""
    import json  # here, as subprocess: a poststop hook with nothing to release imports neither
    import ipaddress  # here: the poststop hook, which only DELs, starts faster without it
    _check(len(raw) <= MAX_OUTPUT, where, "is larger than %d bytes" % MAX_OUTPUT)
    try:
        result = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CNIError("%s: result is not JSON: %s" % (where, exc))
    _check(isinstance(result, dict), where, "is not a JSON object")
    _check(result.get("cniVersion") in SUPPORTED_VERSIONS, where,
           "cniVersion %r is not one of %s" % (result.get("cniVersion"), ", ".join(SUPPORTED_VERSIONS)))
    interfaces = result.get("interfaces", [])
    _check(isinstance(interfaces, list), where, "interfaces is not a list")
    for index, interface in enumerate(interfaces):
        _check(isinstance(interface, dict) and isinstance(interface.get("name"), str) and interface["name"],
               where, "interfaces[%d] has no name" % index)
        for key in ("mac", "sandbox"):
            _check(isinstance(interface.get(key, ""), str), where, "interfaces[%d].%s is not a string" % (index, key))
    ips = result.get("ips", [])
    _check(isinstance(ips, list), where, "ips is not a list")
    for index, entry in enumerate(ips):
        _check(isinstance(entry, dict), where, "ips[%d] is not an object" % index)
        try:
            ipaddress.ip_interface(entry.get("address"))
            if entry.get("gateway") is not None:
                ipaddress.ip_address(entry["gateway"])
        except (TypeError, ValueError):
            raise CNIError("%s: result ips[%d] has a bad address or gateway" % (where, index))
        if "interface" in entry:
            _check(isinstance(entry["interface"], int) and not isinstance(entry["interface"], bool) and 0 <= entry["interface"] < len(interfaces), where,
                   "ips[%d].interface is not an index of interfaces" % index)
    routes = result.get("routes", [])
    _check(isinstance(routes, list) and all(isinstance(r, dict) for r in routes), where, "routes is not a list")
    dns = result.get("dns", {})
    _check(isinstance(dns, dict), where, "dns is not an object")
    for key in ("nameservers", "search", "options"):
        _check(isinstance(dns.get(key, []), list) and all(isinstance(v, str) for v in dns.get(key, [])),
               where, "dns.%s is not a list of strings" % key)
    if dns.get("domain") is not None:
        _check(isinstance(dns["domain"], str), where, "dns.domain is not a string")
    return result


# --------------------------------------------------------------------------
# the cache

def read_cache(root, container_id):
    """The container's cache ({"netns": path, "attachments": [...]}) or None when it has none."""
    import json  # here, as subprocess: a poststop hook with nothing to release imports neither
    try:
        with open(cache_path(root, container_id), "rb") as handle:
            cache = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CNIError("container %s: network cache %s unreadable: %s" % (container_id, cache_path(root, container_id),
                                                                          exc))
    if not isinstance(cache, dict) or not isinstance(cache.get("attachments"), list):
        raise CNIError("container %s: network cache %s is not a cache" % (container_id, cache_path(root, container_id)))
    return cache


def caches(root, exclude=None):
    """(container id, cache) of ROOT's containers with a readable cache, EXCLUDE's left out."""
    area = os.path.join(root, NETWORK_AREA)
    for other in sorted(os.listdir(area)) if os.path.isdir(area) else []:
        if other == exclude or not os.path.isdir(os.path.join(area, other)):
            continue
        try:
            cache = read_cache(root, other)
        except CNIError:
            continue  # not ours to judge here: its own release reports it
        if cache:
            yield other, cache


def write_cache(root, container_id, cache):
    """Replace the cache whole (a temporary file, then a rename: a crash leaves the old or the new one)."""
    import json  # here, as subprocess: a poststop hook with nothing to release imports neither
    path = cache_path(root, container_id)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(cache, handle, sort_keys=True)
    os.rename(tmp, path)


# --------------------------------------------------------------------------
# teardown: DEL from the cache, the namespace unmounted and removed

def _umount(path):
    import ctypes
    # The interpreter's own symbols include libc's (ctypes.util.find_library would run ldconfig: slow).
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode("utf-8"), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (never mounted, or done)
            raise OSError(code, os.strerror(code), path)


def stop_orphaned_plugins(netns):
    """SIGKILL the plugins still running for the namespace NETNS (their CNI_NETNS): a task killed in the
    middle of an ADD leaves its plugin running, and the plugin finishing after the DEL would make again
    what the DEL removed (a bridge, a veth, rules)."""
    needle = ("CNI_NETNS=%s" % netns).encode("utf-8", "surrogateescape")
    me = os.getpid()
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            try:
                os.kill(int(name), signal.SIGKILL)
                killed.append(name)
            except OSError:
                pass
    for _attempt in range(200):  # a killed process is gone in microseconds; a bound for a stuck one
        if not [pid for pid in killed if os.path.exists("/proc/%s/environ" % pid) and _alive(pid)]:
            break
        time.sleep(0.01)


def _alive(pid):
    try:
        with open("/proc/%s/stat" % pid, "rb") as handle:
            state = handle.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def delete_attachment(attachment, container_id, netns, cni_path):
    """CNI DEL of one cached attachment: its list's plugins in reverse order, each given the cached result."""
    config = attachment["config"]
    failures = []
    for plugin in reversed(config.get("plugins") or []):
        try:
            invoke("DEL", plugin, config, container_id, netns, attachment["ifname"],
                   cni_args=attachment.get("cniArgs", ""), cni_path=cni_path,
                   prev_result=attachment.get("result"), runtime_config=attachment.get("runtimeConfig"))
        except CNIError as exc:
            failures.append(str(exc))
    return failures


def release(root, container_id, cni_path=None):
    """Undo every attachment of the container and remove its namespace and files; True when there was any.

    CNIError (after trying everything) when a DEL failed: the cache is kept
    with what is left, so that the next try repeats it.
    """
    directory = container_dir(root, container_id)
    if not os.path.isdir(directory):
        return False
    cache = read_cache(root, container_id) or {"attachments": []}
    netns = netns_path(root, container_id)
    path = cni_path or cache.get("cniPath") or DEFAULT_CNI_PATH
    stop_orphaned_plugins(netns)
    left, failures = [], []
    for attachment in reversed(cache["attachments"]):
        problems = delete_attachment(attachment, container_id, netns, path)
        if problems:
            left.insert(0, attachment)
            failures.extend(problems)
    if failures:
        cache["attachments"] = left
        write_cache(root, container_id, cache)
        raise CNIError("container %s: network release incomplete: %s" % (container_id, "; ".join(failures)))
    _umount(netns)
    import shutil
    shutil.rmtree(directory)
    return True


# The mark of a restart's poststop (_runtime/operations/lifecycle.py RESTARTING_ANNOTATION; this file
# runs alone and imports nothing of ours).
RESTARTING_ANNOTATION = "org.daemonless.oci.restarting"


def restarting(stream):
    """Whether the OCI state on STREAM (a poststop hook's stdin) says the monitor creates the container again
    at once, into the same network namespace: then nothing is released (a later delete releases it)."""
    if stream is None or stream.isatty():
        return False
    import json  # here: only the hook reads it
    try:
        state = json.loads(stream.read(1 << 20) or "null")
    except (ValueError, UnicodeDecodeError):
        return False
    annotations = state.get("annotations") if isinstance(state, dict) else None
    return isinstance(annotations, dict) and annotations.get(RESTARTING_ANNOTATION) == "true"


def main(argv):
    """As a poststop hook: `cni.py delete ROOT ID`, with the OCI state on stdin (a restart's keeps the network)."""
    if len(argv) != 3 or argv[0] != "delete":
        sys.stderr.write("usage: cni.py delete STATE_ROOT CONTAINER_ID\n")
        return 2
    if restarting(sys.stdin):
        return 0
    try:
        release(argv[1], argv[2])
    except (CNIError, OSError) as exc:
        sys.stderr.write("%s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
