# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boot unit brings the container back as oci_container_state made it.

oci_container_state with `boot_record` writes the task's container-shaping
options (everything but what says what to do now: state, wait, timeout,
recreate, restart, logs_lines), validated by Ansible, to a root-only file;
the role's unit runs `ocirt-boot` (main() below, installed beside `ocirt`),
which reads them back and creates the container through container_state.run,
the same `desired()` chain (health check, restart policy, labels, secrets,
networks and published ports, cgroup manager) and the same monitor, then
writes the monitor's pid for systemd's PIDFile=. The monitor supervises
(restarts with backoff, runs health checks); systemd only restarts a monitor
that died.

The record can hold secrets (as podman's file secret driver keeps them):
it is written 0600 in a 0700 directory, and read only when it is a regular
file of the reading user that no one else can read or write. Everything
in it is checked against the module's options before anything is made.

This module imports no Ansible: it runs on the host with the collection's
core that the role installs (roles/container/tasks/cli.yml).
"""
import os
import stat
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state, labels, supervision
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import container_state_argument_spec
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.results import container_result
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile, jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import validate_id
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import parse_signal

RECORD_FORMAT = "daemonless.oci boot record"
RECORD_VERSION = 1
# Far above any real record (secrets included); a larger file is not ours.
MAX_RECORD_BYTES = 1 << 20
# What a task says to do now, not what the container is: never recorded. At boot the container is
# created (recreated if a leftover of the same id exists) and left running.
NOT_RECORDED = ("state", "wait", "timeout", "expected_exit_codes", "recreate", "restart", "logs_lines")
AT_BOOT = dict(state="running", wait="none", timeout=0, expected_exit_codes=None, recreate=True, restart=False,
               logs_lines=0)
# oci_container_state's own option (not oci_containers': a record per container is the role's business).
BOOT_RECORD_ARGSPEC = dict(boot_record=dict(type='path'))
SECRET_MASK = "********"
_TYPES = {"str": str, "path": str, "int": int, "bool": bool, "list": list, "dict": dict}


def recorded_options(spec=None):
    """{name: option spec} of the options a record holds."""
    spec = spec or container_state_argument_spec()
    return dict((name, option) for name, option in spec.items() if name not in NOT_RECORDED)


def record(params, check_mode=False, diff=False):
    """oci_container_state with boot_record: write the record (only when it differs), change no container.

    The options are checked as a create would check them (a record the unit
    cannot use fails here, at deploy time, not at the next boot).
    """
    path = params["boot_record"]
    if not os.path.isabs(path):
        raise OCIError("boot_record: must be an absolute path, not %r" % path)
    validate_id(params["id"])
    if not params.get("bundle"):
        raise OCIError("boot_record: needs bundle (the unit creates the container from it)")
    parse_signal(params["stop_signal"], "stop_signal")
    supervision.supervision_of(params)
    labels.validate(params.get("labels"))
    recorded = dict((name, params.get(name)) for name in recorded_options())
    recorded["bundle"] = os.path.abspath(params["bundle"])
    # The manager chosen now, so that the unit's ocirt commands and every boot agree with this task.
    recorded["cgroup_manager"] = params.get("cgroup_manager") or container_state.host_cgroup_manager()
    content = dict(format=RECORD_FORMAT, version=RECORD_VERSION, params=recorded)
    text = jsonio.dumps(content, indent=2) + "\n"
    before = _current_text(path)
    changed = before != text
    # python: a networked container's poststop hook names the interpreter that made its config, so ocirt-boot
    # must run this one for the task after the unit's start to find the container as it wants it.
    result = dict(changed=changed, boot_record=path, cgroup_manager=recorded["cgroup_manager"], actions=[],
                  python=sys.executable,
                  msg="container %s: boot record %s %s%s" % (
                      params["id"], path, ("would be written" if check_mode else "written") if changed
                      else "unchanged", " (check mode)" if check_mode else ""))
    if changed:
        result["actions"] = ["write boot record %s" % path]
    result["container"] = container_result(container_state.observe(params["state_root"], params["id"])[0])
    if diff:
        result["diff"] = dict(before=_masked_text(before), after=_masked_text(text), before_header=path,
                              after_header=path)
    if changed and not check_mode:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        atomicfile.write(path, text, mode=0o600, durable=True)
    return result


def _current_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""  # unreadable or not ours: rewritten


def _masked_text(text):
    """TEXT, a record, with each secret's content masked (the diff is shown to whoever runs the play)."""
    if not text:
        return ""
    try:
        content = jsonio.loads(text)
        for secret in content["params"].get("secrets") or []:
            if secret.get("content") is not None:
                secret["content"] = SECRET_MASK
        return jsonio.dumps(content, indent=2) + "\n"
    except (ValueError, TypeError, KeyError, AttributeError):
        return "(not a boot record)\n"


def load(path, container_id=None):
    """The task's parameters from the record at PATH, checked as the module's argument spec would check
    them, with what a boot does (AT_BOOT). OCIError naming PATH (and the option) when it is not a record
    this user wrote, or CONTAINER_ID's."""
    what = "boot record %s" % path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("%s: cannot be read: %s" % (what, exc.strerror))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OCIError("%s: not a regular file" % what)
    with os.fdopen(fd, "rb") as handle:
        if info.st_uid != os.geteuid():
            raise OCIError("%s: owned by uid %d, not by uid %d that reads it" % (what, info.st_uid, os.geteuid()))
        if info.st_mode & 0o077:
            raise OCIError("%s: mode %04o lets others than its owner read or write it (it may hold secrets); "
                           "it must be 0600" % (what, stat.S_IMODE(info.st_mode)))
        data = handle.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise OCIError("%s: larger than %d bytes" % (what, MAX_RECORD_BYTES))
    try:
        content = jsonio.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OCIError("%s: not JSON: %s" % (what, exc))
    if not isinstance(content, dict) or content.get("format") != RECORD_FORMAT:
        raise OCIError("%s: not a boot record (format must be %r)" % (what, RECORD_FORMAT))
    if content.get("version") != RECORD_VERSION:
        raise OCIError("%s: version %r, this collection reads version %d; run the role again to rewrite it"
                       % (what, content.get("version"), RECORD_VERSION))
    params = content.get("params")
    if not isinstance(params, dict):
        raise OCIError("%s: params must be an object" % what)
    options = recorded_options()
    unknown = sorted(set(params) - set(options))
    missing = sorted(set(options) - set(params))
    if unknown or missing:
        raise OCIError("%s: %s" % (what, "; ".join(
            part for part in ("unknown options: " + ", ".join(unknown) if unknown else "",
                              "missing options: " + ", ".join(missing) if missing else "") if part)))
    checked = dict((name, _checked(what, name, params[name], option)) for name, option in options.items())
    if not checked["bundle"] or not os.path.isabs(checked["bundle"]):
        raise OCIError("%s: bundle must be an absolute path, not %r" % (what, checked["bundle"]))
    try:
        validate_id(checked["id"])
    except OCIError as exc:
        raise OCIError("%s: id: %s" % (what, exc))
    if container_id is not None and checked["id"] != container_id:
        raise OCIError("%s: is the record of container %s, not of %s" % (what, checked["id"], container_id))
    checked.update(AT_BOOT)
    return checked


def _checked(what, name, value, option):
    """VALUE of the option NAME as the argument spec OPTION allows it (suboptions filled in as
    AnsibleModule fills them), else OCIError naming WHAT and NAME."""
    if value is None:
        if option.get("required"):
            raise OCIError("%s: %s is required" % (what, name))
        return None
    kind = option.get("type", "str")
    if kind != "raw" and (not isinstance(value, _TYPES[kind]) or (kind == "int" and isinstance(value, bool))):
        raise OCIError("%s: %s must be of type %s, not %s" % (what, name, kind, type(value).__name__))
    if option.get("choices") and value not in option["choices"]:
        raise OCIError("%s: %s must be one of %s, not %r" % (what, name, ", ".join(option["choices"]), value))
    if kind == "list":
        element = dict(type=option.get("elements", "str"), options=option.get("options"))
        return [_checked(what, "%s[%d]" % (name, index), item, element) for index, item in enumerate(value)]
    if kind == "dict" and option.get("options"):
        unknown = sorted(set(value) - set(option["options"]))
        if unknown:
            raise OCIError("%s: %s: unknown options: %s" % (what, name, ", ".join(unknown)))
        return dict((key, _checked(what, "%s.%s" % (name, key), value.get(key, sub.get("default")), sub))
                    for key, sub in option["options"].items())
    return value


def start(record_path, pid_file, container_id):
    """The unit's ExecStart: create and start the container from the record; write its monitor's pid to
    PID_FILE (None: a job's unit, which waits for the container with `ocirt wait`, and whose container
    may be done already)."""
    params = load(record_path, container_id)
    container_state.run(params)
    state = container_state.observe(params["state_root"], container_id)[0]
    if pid_file is None:
        return state
    pid = state and state.get("monitorPid")
    if not pid:
        raise OCIError("container %s: created from %s, but no monitor runs it (status %s)"
                       % (container_id, record_path, state["status"] if state else "absent"))
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations.create import write_pid_file
    write_pid_file(pid_file, pid)
    return state


USAGE = "usage: ocirt-boot --record FILE [--pid-file FILE] ID"


def main(argv=None):
    """`ocirt-boot --record FILE [--pid-file FILE] ID`: exit 0 once the container is started (its monitor's pid
    written)."""
    argv = sys.argv[1:] if argv is None else argv
    options = {}
    words = list(argv)
    while len(words) > 1 and words[0] in ("--record", "--pid-file"):
        options[words[0]] = words[1]
        words = words[2:]
    if len(words) != 1 or "--record" not in options:
        sys.stderr.write(USAGE + "\n")
        return 2
    try:
        start(options["--record"], options.get("--pid-file"), words[0])
    except (OCIError, OSError, ValueError) as exc:
        sys.stderr.write("ocirt-boot: container %s: %s\n" % (words[0], exc))
        return 1
    return 0
