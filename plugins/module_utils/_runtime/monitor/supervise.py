# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Supervision: the restart policy and the health check of a monitored container.

The monitor (monitor.py) decides when: it reaps the container, keeps the
backoff, counts restarts and check failures. It never imports the runtime
(its memory is per container), so the work is done by a short-lived helper
it forks: a fresh interpreter that runs main() here:

The helper runs from a copy of the runtime (snapshot.py). Its commands:

  restart ID          re-create and start the container from the config it
                      was created with (state dir config.json, with the
                      resources it was updated to), unless a stop was
                      requested; answer on fd 3 "OK PID OOM_BEFORE",
                      "STOPPED" or "ERROR message".
  health ID TIMEOUT   run the health check's command in the container as
                      `ocirt exec` does; its output is the check's output, its
                      exit code the check's; past TIMEOUT its process group is
                      killed.

No config.json field is applied here; the supervision settings are the
record's "supervision" (checked_supervision).
"""
import os
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import (
    parse_duration, parse_restart_policy)

HEALTH_PID_FILE = "health.pid"
ON_FAILURE = ("none", "restart", "kill")
HEALTH_DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0, "on_failure": "none"}


def checked_supervision(restart=None, healthcheck=None, restart_field="restart_policy", health_field="healthcheck"):
    """The supervision record from a restart policy and a health check as people write them
    (durations as 30s, 1m30s or seconds); None when there is nothing to supervise. Raises OCIError
    naming the field at fault."""
    name, maximum = parse_restart_policy(restart, restart_field)
    record = {}
    if name != "no":
        record["restart"] = name + (":%d" % maximum if maximum else "")
    if healthcheck:
        field = health_field
        if not isinstance(healthcheck, dict):
            raise OCIError("%s: must be a mapping with test, interval, timeout, retries, start_period, "
                           "on_failure" % field)
        unknown = sorted(set(healthcheck) - set(HEALTH_DEFAULTS) - set(["test"]))
        if unknown:
            known = ", ".join(sorted(HEALTH_DEFAULTS))
            raise OCIError("%s: unknown key %s (known: test, %s)" % (field, ", ".join(unknown), known))
        test = healthcheck.get("test")
        if isinstance(test, str) and test.strip():
            test = ["/bin/sh", "-c", test]
        if not isinstance(test, list) or not test or not all(isinstance(arg, str) and arg for arg in test):
            raise OCIError("%s.test: must be the command to run, a non-empty list of strings (argv) or a "
                           "shell command line, not %r" % (field, test))
        check = {"test": test}
        for key in ("interval", "timeout", "start_period"):
            value = healthcheck.get(key)
            check[key] = HEALTH_DEFAULTS[key] if value is None else parse_duration(value, "%s.%s" % (field, key))
        if check["interval"] <= 0 or check["timeout"] <= 0:
            raise OCIError("%s: interval and timeout must be more than 0 seconds" % field)
        retries = healthcheck.get("retries")
        retries = HEALTH_DEFAULTS["retries"] if retries is None else retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
            raise OCIError("%s.retries: must be a whole number of 1 or more, not %r" % (field, retries))
        check["retries"] = retries
        on_failure = healthcheck.get("on_failure") or "none"
        if on_failure not in ON_FAILURE:
            raise OCIError("%s.on_failure: must be one of %s, not %r" % (field, ", ".join(ON_FAILURE), on_failure))
        check["on_failure"] = on_failure
        record["healthcheck"] = check
    return record or None


# -- the helper's side ---------------------------------------------------------------

def restart(root, container_id):
    """Create and start the container again; the answer for the monitor."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import monitor
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create, lifecycle
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container, STOP_MARKER
    container = Container.open(root, container_id)
    with container:
        if os.path.exists(container.path(STOP_MARKER)):
            return "STOPPED"
        record = container.read()
        if container.is_alive():
            return "ERROR its process %d still runs" % record["pid"]
        config = container.config()
        if not config:
            return "ERROR the config it was created with is gone"
        if record.get("resources") is not None:
            config["linux"] = dict(config.get("linux") or {}, resources=record["resources"])
        lifecycle.clear_for_restart(container)
        supervision = record.get("supervision") or {}
        pid = create.create(root, container_id, record["bundle"], config=config,
                            monitor_record=record.get("monitor"), supervision=supervision,
                            systemd_cgroup=bool(supervision.get("systemdCgroup")), reuse=container)
    with Container.open(root, container_id) as container:
        oom_before = monitor.oom_kills(container.read().get("oomFile") or "")
        stop = os.path.exists(container.path(STOP_MARKER))
    if stop:
        os.kill(pid, 9)
        return "STOPPED"
    try:
        lifecycle.start(root, container_id)
    except OCIError:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        raise
    return "OK %d %s" % (pid, "-" if oom_before is None else oom_before)


def health(root, container_id, timeout):
    """Run the health check once; its exit code (its output went to ours)."""
    import _signal
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import container_exec
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container
    with Container.open(root, container_id) as container:
        check = (container.read().get("supervision") or {}).get("healthcheck")
        config = container.config()
        pid_file = container.path(HEALTH_PID_FILE)
    if not check:
        raise OCIError("container %s: has no health check" % container_id)
    proc = container_exec.build_process(config, {"args": check["test"]})
    timed_out = []

    def expire(_signum, _frame):
        # The check's process leads a session of its own (exec's setsid): its whole group goes.
        timed_out.append(True)
        try:
            with open(pid_file) as handle:
                os.killpg(int(handle.read().strip()), 9)
        except (OSError, ValueError):
            pass
    _signal.signal(_signal.SIGALRM, expire)
    _signal.setitimer(_signal.ITIMER_REAL, timeout)
    try:
        code = container_exec.exec_process(root, container_id, proc, pid_file=pid_file)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        try:
            os.unlink(pid_file)
        except OSError:
            pass
    if timed_out:
        sys.stdout.write("\n[health check timed out after %gs]\n" % timeout)
        return 1
    return code


def main(argv):
    root, command, container_id = argv[:3]
    try:
        if command == "restart":
            answer = restart(root, container_id)
            os.write(3, answer.encode())
            return 0
        if command == "health":
            return health(root, container_id, float(argv[3]))
        raise OCIError("unknown supervision command %r" % command)
    except (OCIError, OSError) as exc:
        message = str(exc) if isinstance(exc, OCIError) else "%s: %s" % (exc.filename or "", exc.strerror or exc)
        if command == "restart":
            os.write(3, ("ERROR " + message).encode("utf-8", "replace"))
            return 1
        sys.stdout.write("[health check: %s]\n" % message)
        return 1
