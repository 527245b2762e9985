# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ocirt`: the runtime core as a runc-compatible command.

    ocirt [--root DIR] [--log FILE] [--log-format text|json] [--systemd-cgroup] COMMAND [OPTIONS] [ARGS]

--systemd-cgroup (runc's flag) chooses the systemd cgroup driver for create
and run: linux.cgroupsPath must read slice:prefix:name, and an empty one is
system.slice:ocirt:<id>, the scope ocirt-<id>.scope. Other commands take the
flag and need nothing of it: the scope is recorded with the container.

The argument parser is small and hand-written: argparse alone would cost
about as much start-up time as a whole `state` command (it imports re and
gettext). Flags take `--name value`, `--name=value`, or Go's `-name value`,
as runc's clients pass them.
"""
import os
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import DEFAULT_ROOT

# command -> ({flag: (takes a value?, canonical name)}, [positional names], usage)
_LOG_FLAGS = {"log-path": (True, "log_path"), "log-max-size": (True, "log_max_size"),
              "log-max-files": (True, "log_max_files")}
_COMMANDS = {
    "create": (dict({"bundle": (True, "bundle"), "b": (True, "bundle"), "pid-file": (True, "pid_file"),
                     "console-socket": (True, "console_socket"), "preserve-fds": (True, "preserve_fds"),
                     "no-pivot": (False, "no_pivot"), "no-new-keyring": (False, "no_new_keyring"),
                     "monitor": (False, "monitor"), "restart": (True, "restart"),
                     "monitor-pid-file": (True, "monitor_pid_file")}, **_LOG_FLAGS),
               ["id"], "create [--bundle DIR] [--pid-file FILE] [--console-socket SOCKET] "
                       "[--preserve-fds N] [--monitor [--log-path FILE] [--log-max-size N] "
                       "[--log-max-files N] [--restart POLICY] [--monitor-pid-file FILE]] ID"),
    "run": (dict({"bundle": (True, "bundle"), "b": (True, "bundle"), "pid-file": (True, "pid_file"),
                  "console-socket": (True, "console_socket"), "preserve-fds": (True, "preserve_fds"),
                  "detach": (False, "detach"), "d": (False, "detach"), "keep": (False, "keep"),
                  "no-pivot": (False, "no_pivot"), "no-new-keyring": (False, "no_new_keyring"),
                  "restart": (True, "restart"), "monitor-pid-file": (True, "monitor_pid_file")},
                 **_LOG_FLAGS),
            ["id"], "run [--bundle DIR] [--detach [--log-path FILE] [--restart POLICY] [--monitor-pid-file FILE] ...] [--keep] [--pid-file FILE] "
                    "[--preserve-fds N] ID"),
    "wait": ({"timeout": (True, "timeout")}, ["id"], "wait [--timeout SECONDS] ID"),
    "logs": ({"tail": (True, "tail"), "n": (True, "tail"), "follow": (False, "follow"), "f": (False, "follow"),
              "since": (True, "since"), "timestamps": (False, "timestamps"), "t": (False, "timestamps")},
             ["id"], "logs [--tail N] [--follow] [--since TIME] [--timestamps] ID"),
    "start": ({}, ["id"], "start ID"),
    "state": ({}, ["id"], "state ID"),
    "kill": ({"all": (False, "all"), "a": (False, "all")}, ["id", "signal?"], "kill [--all] ID [SIGNAL]"),
    "delete": ({"force": (False, "force"), "f": (False, "force")}, ["id"], "delete [--force] ID"),
    "list": ({"format": (True, "format"), "f": (True, "format"), "quiet": (False, "quiet"),
              "q": (False, "quiet")}, [], "list [--format table|json] [--quiet]"),
    "spec": ({"bundle": (True, "bundle"), "b": (True, "bundle")}, ["args*"], "spec [--bundle DIR] [ARG...]"),
    "exec": ({"process": (True, "process"), "p": (True, "process"), "tty": (False, "tty"), "t": (False, "tty"),
              "detach": (False, "detach"), "d": (False, "detach"), "pid-file": (True, "pid_file"),
              "env": (True, "env[]"), "e": (True, "env[]"), "cwd": (True, "cwd"), "user": (True, "user"),
              "u": (True, "user"), "cap": (True, "cap[]"), "c": (True, "cap[]"),
              "no-new-privs": (False, "no_new_privs"), "preserve-fds": (True, "preserve_fds"),
              "console-socket": (True, "console_socket")},
             ["id", "args*"], "exec [--process FILE] [--tty] [--detach] [--pid-file F] [--env K=V]... [--cwd DIR] "
                              "[--user UID[:GID]] [--cap CAP]... ID [ARGS...]"),
    "features": ({}, [], "features"),
    "pause": ({}, ["id"], "pause ID"),
    "resume": ({}, ["id"], "resume ID"),
    "ps": ({"format": (True, "format"), "f": (True, "format")}, ["id"], "ps [--format table|json] ID"),
    "update": (dict([("resources", (True, "resources")), ("r", (True, "resources"))]
                    + [(flag, (True, flag)) for flag in (
                        "memory", "memory-reservation", "memory-swap", "kernel-memory", "cpu-shares",
                        "cpu-quota", "cpu-period", "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus",
                        "cpuset-mems", "pids-limit", "blkio-weight")]),
               ["id"], "update [--resources FILE|-] [--memory N] [--memory-swap N] [--cpu-quota N] "
                       "[--pids-limit N] ... ID"),
}

# update's flags: flag -> (path in linux.resources, parse as a size with k/m/g suffixes?)
_UPDATE_FLAGS = {
    "memory": (("memory", "limit"), True),
    "memory-reservation": (("memory", "reservation"), True),
    "memory-swap": (("memory", "swap"), True),
    "kernel-memory": (("memory", "kernel"), True),
    "cpu-shares": (("cpu", "shares"), False),
    "cpu-quota": (("cpu", "quota"), False),
    "cpu-period": (("cpu", "period"), False),
    "cpu-rt-period": (("cpu", "realtimePeriod"), False),
    "cpu-rt-runtime": (("cpu", "realtimeRuntime"), False),
    "cpuset-cpus": (("cpu", "cpus"), None),
    "cpuset-mems": (("cpu", "mems"), None),
    "pids-limit": (("pids", "limit"), False),
    "blkio-weight": (("blockIO", "weight"), False),
}
_GLOBAL_FLAGS = {"root": (True, "root"), "log": (True, "log"), "log-format": (True, "log_format"),
                 "debug": (False, "debug"), "systemd-cgroup": (False, "systemd_cgroup"),
                 "help": (False, "help"), "h": (False, "help"), "version": (False, "version"),
                 "v": (False, "version")}


class UsageError(OCIError):
    pass


def _parse_flags(argv, flags, stop_at_positional):
    """Consume leading/interleaved flags from ARGV; return (options, positionals)."""
    options = {}
    positionals = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            positionals.extend(argv[index:])
            break
        if arg.startswith("-") and len(arg) > 1 and not arg.lstrip("-").isdigit():
            name, has_value, value = arg.lstrip("-").partition("=")
            if name not in flags:
                raise UsageError("unknown flag %s" % arg)
            takes_value, key = flags[name]
            if takes_value:
                if not has_value:
                    if index >= len(argv):
                        raise UsageError("flag %s needs a value" % arg)
                    value = argv[index]
                    index += 1
                if key.endswith("[]"):
                    options.setdefault(key[:-2], []).append(value)
                else:
                    options[key] = value
            else:
                options[key] = value.lower() not in ("false", "0") if has_value else True
            continue
        positionals.append(arg)
        if stop_at_positional:
            positionals.extend(argv[index:])
            break
    return options, positionals


def parse(argv):
    """(global options, command, command options) from ARGV (without the program name)."""
    global_options, rest = _parse_flags(argv, _GLOBAL_FLAGS, stop_at_positional=True)
    if global_options.get("help") or global_options.get("version") or not rest:
        return global_options, None, {}
    command, rest = rest[0], rest[1:]
    if command not in _COMMANDS:
        raise UsageError("unknown command %r (commands: %s)" % (command, ", ".join(sorted(_COMMANDS))))
    flags, names, usage = _COMMANDS[command]
    # exec's flags stop at the container id: what follows is the command and its own flags.
    options, positionals = _parse_flags(rest, flags, stop_at_positional=command == "exec")
    if command == "exec" and positionals[1:2] == ["--"]:
        del positionals[1]
    for name in names:
        if name.endswith("*"):
            options[name[:-1]] = positionals
            positionals = []
        elif positionals:
            options[name.rstrip("?")] = positionals.pop(0)
        elif not name.endswith("?"):
            raise UsageError("%s: missing %s (usage: ocirt %s)" % (command, name.upper(), usage))
    if positionals:
        raise UsageError("%s: unexpected arguments %s (usage: ocirt %s)"
                         % (command, " ".join(positionals), usage))
    return global_options, command, options


def _preserve_fds(options):
    if "preserve_fds" not in options:
        return 0  # the usual case, without importing values.py for it
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import is_digits
    value = options["preserve_fds"]
    if not is_digits(value):
        raise UsageError("--preserve-fds %s: must be a non-negative integer" % value)
    return int(value)


def _print_json(data, indent=2):
    sys.stdout.write(jsonio.dumps(data, indent=indent) + "\n")


def _run_command(root, command, options, systemd_cgroup=False):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
    if command == "create":
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create
        if options.get("monitor"):
            create.create_monitored(root, options["id"], options.get("bundle", "."),
                                    pid_file=options.get("pid_file"), preserve_fds=_preserve_fds(options),
                                    systemd_cgroup=systemd_cgroup, supervision=_supervision(options),
                                    **_log_options(options))
            _write_monitor_pid(root, options)
        else:
            if _log_options(options) or options.get("restart") or options.get("monitor_pid_file"):
                raise UsageError("create: --log-path, --log-max-size, --log-max-files, --restart and "
                                 "--monitor-pid-file need --monitor")
            create.create(root, options["id"], options.get("bundle", "."), pid_file=options.get("pid_file"),
                          console_socket=options.get("console_socket"), preserve_fds=_preserve_fds(options),
                          systemd_cgroup=systemd_cgroup)
    elif command == "start":
        lifecycle.start(root, options["id"])
    elif command == "state":
        _print_json(lifecycle.state(root, options["id"]))
    elif command == "kill":
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import parse_signal
        given = options.get("signal")  # as runc: none given means SIGTERM
        signum = parse_signal("SIGTERM" if given is None else given, "kill")
        lifecycle.kill(root, options["id"], signum, all_processes=options.get("all", False))
    elif command == "delete":
        lifecycle.delete(root, options["id"], force=options.get("force", False))
    elif command == "run":
        if (_log_options(options) or options.get("restart") or options.get("monitor_pid_file")) \
                and not options.get("detach"):
            raise UsageError("run: --log-path, --log-max-size, --log-max-files, --restart and --monitor-pid-file "
                             "need --detach")
        log_options = _log_options(options)
        if options.get("restart"):
            log_options["supervision"] = _supervision(options)
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import run
        code = run.run(root, options["id"], options.get("bundle", "."),
                       pid_file=options.get("pid_file"), preserve_fds=_preserve_fds(options),
                       detach=options.get("detach", False), keep=options.get("keep", False),
                       log_options=log_options, systemd_cgroup=systemd_cgroup)
        if options.get("detach"):
            _write_monitor_pid(root, options)
        return code
    elif command == "wait":
        timeout = options.get("timeout")
        try:
            timeout = float(timeout) if timeout is not None else None
        except ValueError:
            raise UsageError("wait --timeout %s: must be a number of seconds" % timeout)
        final = lifecycle.wait(root, options["id"], timeout=timeout)
        code = final.get("exitCode")
        if code is None:
            raise OCIError("container %s: stopped, exit code unknown (%s)"
                           % (options["id"], final.get("exitReason", "no monitor recorded it")))
        sys.stdout.write("%d\n" % code)
        return code
    elif command == "logs":
        _print_logs(root, options)
    elif command == "exec":
        return _exec(root, options)
    elif command == "features":
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.features import features
        _print_json(features())
    elif command == "list":
        _print_list(lifecycle.list_containers(root, lambda text: sys.stderr.write("ocirt: warning: %s\n" % text)),
                    options)
    elif command == "spec":
        _write_spec(options)
    elif command in ("pause", "resume"):
        lifecycle.pause(root, options["id"], frozen=command == "pause")
    elif command == "ps":
        _print_processes(lifecycle.processes(root, options["id"]), options.get("format", "table"))
    elif command == "update":
        lifecycle.update(root, options["id"], _update_resources(options))
    return 0


def _exec(root, options):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import container_exec, lifecycle
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import is_digits
    if not options.get("process") and not options.get("args"):
        raise UsageError("exec: give the command after the id, or --process FILE")
    overrides = {"args": options.get("args") or None, "env": options.get("env"), "cwd": options.get("cwd"),
                 "terminal": options.get("tty") or None}
    if options.get("user"):
        uid, _sep, gid = options["user"].partition(":")
        if not is_digits(uid) or (gid and not is_digits(gid)):
            raise UsageError("exec --user %s: must be UID or UID:GID" % options["user"])
        overrides["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if options.get("no_new_privs"):
        overrides["noNewPrivileges"] = True
    with_config = lifecycle.container_config(root, options["id"])
    if options.get("cap"):
        names = [c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper() for c in options["cap"]]
        caps = dict((key, list(value)) for key, value in
                    ((with_config.get("process") or {}).get("capabilities") or {}).items())
        for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            caps[key] = list(caps.get(key) or []) + [n for n in names if n not in (caps.get(key) or [])]
        overrides["capabilities"] = caps
    proc = container_exec.build_process(with_config, overrides, options.get("process"))
    return container_exec.exec_process(root, options["id"], proc, detach=options.get("detach", False),
                                       pid_file=options.get("pid_file"), preserve_fds=_preserve_fds(options),
                                       console_socket=options.get("console_socket"))


def _write_monitor_pid(root, options):
    """--monitor-pid-file: the monitor's pid, for a supervisor such as systemd (PIDFile=) to watch it."""
    if not options.get("monitor_pid_file"):
        return
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create, lifecycle
    pid = lifecycle.state(root, options["id"]).get("monitorPid")
    if not pid:
        raise OCIError("container %s: its monitor has already exited; no pid for --monitor-pid-file"
                       % options["id"])
    create.write_pid_file(options["monitor_pid_file"], pid)


def _supervision(options):
    """create_monitored's supervision from --restart (a usage error when malformed)."""
    if not options.get("restart"):
        return None
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor.supervise import checked_supervision
    try:
        return checked_supervision(restart=options["restart"], restart_field="--restart")
    except OCIError as exc:
        raise UsageError(str(exc))


def _log_options(options):
    result = {}
    if options.get("log_path"):
        result["log_path"] = options["log_path"]
    if options.get("log_max_size") is not None:
        result["log_max_size"] = _size_flag(options["log_max_size"], "log-max-size")
    if options.get("log_max_files") is not None:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import is_digits
        if not is_digits(options["log_max_files"]) or int(options["log_max_files"]) < 1:
            raise UsageError("--log-max-files %s: must be a positive integer" % options["log_max_files"])
        result["log_max_files"] = int(options["log_max_files"])
    return result


def _print_logs(root, options):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import logs
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import is_digits
    path, max_files, still_running = lifecycle.log_source(root, options["id"])
    tail = options.get("tail")
    if tail is not None and not (is_digits(tail) or tail == "all"):
        raise UsageError("logs --tail %s: must be a number or all" % tail)
    since = logs.parse_since(options["since"]) if options.get("since") else None
    timestamps = options.get("timestamps", False)
    records, offset = logs.read_records_and_offset(path, max_files)
    records = logs.select_records(records, tail=int(tail) if tail and is_digits(tail) else None, since=since)
    _write_pieces(logs.render(records, timestamps))
    if options.get("follow"):
        for record in logs.follow(path, offset, still_running):
            if since is None or record.timestamp >= since:
                _write_pieces(logs.render([record], timestamps))


def _write_pieces(pieces):
    for stream, data in pieces:
        target = sys.stderr if stream == "stderr" else sys.stdout
        target.flush()
        target.buffer.write(data)
        target.buffer.flush()


def _size_flag(value, flag):
    """A size flag's bytes; a malformed one is a usage error (exit code 2), as the other flags'."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import parse_size
    try:
        return parse_size(value, "--" + flag)
    except OCIError as exc:
        raise UsageError(str(exc))


def _update_resources(options):
    resources = {}
    source = options.get("resources")
    if source is not None:
        try:
            text = sys.stdin.read() if source == "-" else open(source).read()
            resources = jsonio.loads(text)
        except (OSError, ValueError) as exc:
            raise OCIError("--resources %s: %s" % (source, exc))
        if not isinstance(resources, dict):
            raise OCIError("--resources %s: must hold a JSON object (linux.resources)" % source)
    for flag, ((group, key), is_size) in _UPDATE_FLAGS.items():
        value = options.get(flag)
        if value is None:
            continue
        if is_size:
            number = _size_flag(value, flag)
        elif is_size is None:
            number = value
        else:
            try:
                number = int(value)
            except ValueError:
                raise UsageError("--%s %s: must be an integer" % (flag, value))
        resources.setdefault(group, {})[key] = number
    if not resources:
        raise UsageError("update: nothing to change (give --resources or a limit flag)")
    return resources


def _print_processes(pids, output):
    if output == "json":
        _print_json(pids, indent=None)
        return
    if output != "table":
        raise UsageError("ps --format %s: must be table or json" % output)
    sys.stdout.write("PID   CMD\n")
    for pid in pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        sys.stdout.write("%-5d %s\n" % (pid, command))


def _print_list(states, options):
    output = options.get("format", "table")
    if options.get("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif output == "json":
        _print_json(states, indent=None)
    elif output == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows.extend((s["id"], str(s["pid"]), s["status"], s["bundle"] or "", s["created"] or "", "root")
                    for s in states)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            sys.stdout.write("   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")
    else:
        raise UsageError("list --format %s: must be table or json" % output)


def _write_spec(options):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config
    path = os.path.join(options.get("bundle", "."), "config.json")
    if os.path.exists(path):
        raise OCIError("%s: already exists; remove it first" % path)
    with open(path, "w") as handle:
        handle.write(jsonio.dumps(default_config(options.get("args") or None), indent=2) + "\n")


def _log_error(global_options, message):
    sys.stderr.write("ocirt: %s\n" % message)
    path = global_options.get("log")
    if not path:
        return
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import utc_now
    if global_options.get("log_format", "text") == "json":
        line = jsonio.dumps({"level": "error", "msg": message, "time": utc_now()})
    else:
        line = 'time="%s" level=error msg="%s"' % (utc_now(), message.replace('"', '\\"'))
    try:
        with open(path, "a") as handle:
            handle.write(line + "\n")
    except OSError as exc:
        sys.stderr.write("ocirt: cannot write --log %s: %s\n" % (path, exc.strerror))


def _usage():
    lines = ["usage: ocirt [--root DIR] [--log FILE] [--log-format text|json] [--systemd-cgroup] COMMAND ...", "",
             "commands:"]
    lines.extend("  ocirt " + spec[2] for spec in _COMMANDS.values())
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    global_options = {}
    try:
        global_options, command, options = parse(argv)
        if global_options.get("log_format", "text") not in ("text", "json"):
            raise UsageError("--log-format %s: must be text or json" % global_options["log_format"])
        if global_options.get("version"):
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.features import VERSION
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import OCI_VERSION
            sys.stdout.write("ocirt version %s\nspec: %s\n" % (VERSION, OCI_VERSION))
            return 0
        if command is None:
            sys.stdout.write(_usage())
            return 0 if global_options.get("help") else 2
        root = global_options.get("root", DEFAULT_ROOT)
        if not os.path.isabs(root):
            root = os.path.abspath(root)
        code = _run_command(root, command, options, systemd_cgroup=global_options.get("systemd_cgroup", False))
    except OCIError as exc:
        _log_error(global_options, str(exc))
        code = 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        code = 130
    except OSError as exc:
        # The last resort for what no layer turned into an OCIError: a message, not a traceback.
        _log_error(global_options, "%s%s" % (exc.strerror or exc, ": %s" % exc.filename if exc.filename else ""))
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def launch():
    """The `ocirt` launcher's entry point: main(), then leave without the interpreter's teardown.

    Python's finalization (module teardown, garbage collection) costs about 1.5 ms of every
    command and does nothing a finished command needs: main() has flushed stdout and stderr,
    and closed every file it wrote. An exception main() lets through still ends in Python's
    own report, as before.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # main() returns early for --version and --help
        except (OSError, ValueError):
            pass
    os._exit(code)
