# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_container_state's supervision: restart_policy, healthcheck, wait=healthy, re-supervision.

The monitor does the supervising (runtime: monitor/monitor.py and
supervise.py); this turns the task's options into the monitor's record,
makes a change of them visible to the plan (as annotations
org.daemonless.oci.supervision.*, so a change recreates the container),
adopts a running container whose monitor is gone, and waits for health.
"""
import time

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.reconcile import Action
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor.supervise import checked_supervision

ANNOTATION_PREFIX = "org.daemonless.oci.supervision."
HEALTH_POLL_SECONDS = 0.2


def supervision_of(params):
    """The monitor's supervision record for the task (None: nothing to supervise); OCIError names the option."""
    return checked_supervision(restart=params.get("restart_policy"), healthcheck=params.get("healthcheck"))


def with_supervision(config, params):
    """CONFIG with the supervision as annotations, so that the plan sees a change of it (and recreates)."""
    supervision = supervision_of(params)
    if not supervision:
        return config
    annotations = dict(config.get("annotations") or {})
    annotations[ANNOTATION_PREFIX + "restart"] = supervision.get("restart", "no")
    if supervision.get("healthcheck"):
        annotations[ANNOTATION_PREFIX + "healthcheck"] = jsonio.dumps(supervision["healthcheck"])
    return dict(config, annotations=annotations)


def adoption(current, actions):
    """The action that puts a new monitor in charge of CURRENT when it runs unsupervised, else None.

    A container whose monitor was killed keeps running; nothing else would
    record its exit or restart it. Not when the plan stops or deletes it anyway.
    """
    if not current or current["status"] not in ("running", "paused") or "logPath" not in current:
        return None
    if current.get("monitorPid") or any(action.verb in ("stop", "delete") for action in actions):
        return None
    return Action("supervise", "unsupervised: its monitor is gone; a new monitor adopts the running container")


def wait_healthy(observe, container_id, timeout, poll=HEALTH_POLL_SECONDS):
    """Wait until the container's health check passes; return its state. OCIError, with the check's last
    output, when it turns unhealthy, the container stops, or TIMEOUT seconds (0: no limit) pass."""
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        state = observe()
        if state is None:
            raise OCIError("container %s: is gone" % container_id)
        health = state.get("health")
        if health is None:
            raise OCIError("wait=healthy: container %s has no healthcheck" % container_id)
        status = health.get("status")
        if status == "healthy":
            return state
        if status == "unhealthy" or state["status"] == "stopped":
            raise OCIError("container %s: %s; the last health check exited %s: %s"
                           % (container_id, "unhealthy" if status == "unhealthy" else "stopped before it was healthy",
                              health.get("lastExitCode"), (health.get("lastOutput") or "").strip()))
        if deadline is not None and time.monotonic() >= deadline:
            raise OCIError("container %s: not healthy after %s seconds (health: %s); the last health check exited "
                           "%s: %s" % (container_id, timeout, status, health.get("lastExitCode"),
                                       (health.get("lastOutput") or "").strip()))
        time.sleep(poll)
