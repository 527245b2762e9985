# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bringing a container to a wanted state: what to do (plan) and doing it (apply).

The comparison is between configs, never command lines: the config.json
the container was created from (kept in its state directory), with the
resources it has been updated to since, against the bundle's config.json
now. A change the kernel can take in place (cgroup limits) is an update;
any other change recreates the container. The plan is data, so check mode
reports it and unit tests check it without containers.
"""
import os
import signal as signals
import time

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import DEFAULT_STOP_SIGNAL, DEFAULT_STOP_TIMEOUT
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import parse_signal

# linux.resources groups that `update` can change on a live container.
UPDATABLE_RESOURCES = ("memory", "cpu", "pids", "blockIO", "hugepageLimits", "unified")
# Fields whose removal means "no limit" rather than a recreate.
_UNLIMITED = {("memory", "limit"): -1, ("memory", "swap"): -1, ("memory", "reservation"): -1,
              ("pids", "limit"): -1, ("cpu", "quota"): -1}

LIVE = ("created", "running", "paused")
# The status each action leads to.
_STATUS_AFTER = {"create": "created", "start": "running", "resume": "running", "stop": "stopped",
                 "delete": "absent"}

# After SIGKILL: how long the processes, and the monitor recording the exit, may take to be gone.
KILL_SETTLE_SECONDS = 10.0


def _diff_paths(before, after, prefix=()):
    """Paths (tuples) of the leaves that differ; lists compare whole."""
    if isinstance(before, dict) and after is None:
        after = {}
    elif isinstance(after, dict) and before is None:
        before = {}
    if isinstance(before, dict) and isinstance(after, dict):
        paths = []
        for key in sorted(set(before) | set(after)):
            paths.extend(_diff_paths(before.get(key), after.get(key), prefix + (key,)))
        return paths
    return [] if before == after else [prefix]


def effective_config(stored_config, stored_resources):
    """The config a container runs with: as created, with its resources as updated since."""
    config = dict(stored_config)
    linux = dict(config.get("linux") or {})
    if stored_resources is not None:
        linux["resources"] = stored_resources
    config["linux"] = linux
    return config


def compare(current_config, desired_config):
    """(resource updates to apply in place, reasons to recreate) between two configs."""
    updates = {}
    reasons = []
    desired_resources = (desired_config.get("linux") or {}).get("resources") or {}
    for path in _diff_paths(current_config, desired_config):
        if len(path) >= 3 and path[:2] == ("linux", "resources") and path[2] in UPDATABLE_RESOURCES:
            group = path[2]
            if group in ("hugepageLimits", "unified") or len(path) == 3:
                wanted = desired_resources.get(group)
                if wanted is None:
                    reasons.append("linux.resources.%s removed" % group)
                    continue
                updates[group] = wanted
                continue
            value = desired_resources.get(group, {}).get(path[3])
            if value is None:
                if (group, path[3]) not in _UNLIMITED:
                    reasons.append("%s removed" % ".".join(path))
                    continue
                value = _UNLIMITED[(group, path[3])]
            updates.setdefault(group, {})[path[3]] = value
            continue
        reasons.append("%s changed" % ".".join(str(p) for p in path))
    return updates, reasons


class Action:
    def __init__(self, verb, reason=None, resources=None, fresh_rootfs=False):
        self.verb = verb
        self.reason = reason
        self.resources = resources
        # A create from a changed config: an image bundle's writable layer starts empty, as a new podman or
        # docker container's does; a restart (of a stopped one, asked for, or the monitor's) keeps it.
        self.fresh_rootfs = fresh_rootfs

    def describe(self):
        if self.verb == "update":
            return "update: %s" % ", ".join(sorted(self.resources))
        return "%s: %s" % (self.verb, self.reason) if self.reason else self.verb

    def __repr__(self):
        return "Action(%s)" % self.describe()


def restart_pending(current):
    """CURRENT (a state dict, or None) is stopped, and its monitor restarts it when its policy's backoff
    ends: docker's "restarting". Wanted running, it is left to the monitor; wanted stopped, it is stopped."""
    return bool(current) and current.get("restartPending") is True


def plan(current, current_config, desired_config, desired_bundle, want, recreate=False, restart=False,
         job=False, unknown=None):
    """The actions that take a container from CURRENT (its state dict, or None) to WANT.

    WANT is created, running, stopped or absent. JOB: a stopped container of
    the same config is a finished job, not one to start again. Stopped with
    no DESIRED_BUNDLE only stops what runs. UNKNOWN: why DESIRED_CONFIG is not
    known (check mode before an earlier task made the bundle); an existing
    container is then planned as recreated for that reason.
    """
    actions = []
    status = current["status"] if current else None
    if want == "absent":
        if status in LIVE:
            actions.append(Action("stop"))
        if current:
            actions.append(Action("delete"))
        return actions
    if want == "stopped" and desired_bundle is None:
        if restart_pending(current):
            return [Action("stop", "its restart is due")]
        return [Action("stop")] if status in ("running", "paused") else []
    if current:
        reasons = []
        updates = {}
        if unknown:
            reasons.append(unknown)
        elif current.get("bundle") != desired_bundle:
            reasons.append("bundle changed from %s to %s" % (current.get("bundle"), desired_bundle))
        if not reasons:
            updates, reasons = compare(current_config, desired_config)
        if recreate:
            reasons.append("recreate requested")
        fresh_rootfs = bool(reasons)
        if restart and want == "running" and status in ("running", "paused", "stopped"):
            reasons.append("restart requested")
        if want == "created" and status != "created" and not reasons:
            reasons.append("wanted created, is %s" % status)
        if want == "running" and status == "stopped" and not job and not reasons and not restart_pending(current):
            reasons.append("stopped, wanted running")
        if reasons:
            if status in LIVE:
                actions.append(Action("stop", reasons[0]))
            actions.append(Action("delete", reasons[0]))
            actions.append(Action("create", "recreate: " + "; ".join(reasons), fresh_rootfs=fresh_rootfs))
            status = "created"
        elif updates and status in LIVE:
            actions.append(Action("update", resources=updates))
    else:
        if want in ("created", "running", "stopped"):
            actions.append(Action("create"))
            status = "created"
    if want == "running":
        if status == "created":
            actions.append(Action("start"))
        elif status == "paused":
            actions.append(Action("resume"))
    elif want == "stopped" and status in ("running", "paused"):
        actions.append(Action("stop"))
    elif want == "stopped" and status == "stopped" and restart_pending(current) and not actions:
        actions.append(Action("stop", "its restart is due"))
    return actions


def status_after(current, actions):
    """The status ACTIONS lead to from CURRENT (a state dict, or None: absent), for a diff."""
    status = current["status"] if current else "absent"
    for action in actions:
        status = _STATUS_AFTER.get(action.verb, status)
    return status


class Options:
    """How apply does its work: the stop signal and timeout, the new monitor's log, the cgroup driver.

    Checked when made, so that a bad value fails the task before any action.
    """

    def __init__(self, stop_signal=DEFAULT_STOP_SIGNAL, stop_timeout=DEFAULT_STOP_TIMEOUT, log_path=None,
                 log_max_size=None, log_max_files=None, systemd_cgroup=False, config=None, supervision=None):
        self.stop_signal = parse_signal(stop_signal, "stop_signal")
        if stop_timeout < 0:
            raise OCIError("stop_timeout: must be 0 or more seconds, not %s" % stop_timeout)
        if log_max_size is not None and log_max_size < 0:
            raise OCIError("log_max_size: must be 0 (no rotation) or more bytes, not %s" % log_max_size)
        if log_max_files is not None and log_max_files < 1:
            raise OCIError("log_max_files: must be 1 or more, not %s" % log_max_files)
        self.stop_timeout = stop_timeout
        # create_monitored's keyword arguments; what is unset (None) keeps its default there.
        self.log = dict((key, value) for key, value in (
            ("log_path", log_path or None), ("log_max_size", log_max_size), ("log_max_files", log_max_files))
            if value is not None)
        self.systemd_cgroup = systemd_cgroup  # create's cgroup driver: systemd's, or the runtime's own
        # The config a new container is created from: the bundle's, with what the task adds to it
        # (container_state.desired_config); None reads the bundle's config.json.
        self.config = config
        # What the new container's monitor supervises (supervise.checked_supervision's record), or None.
        self.supervision = supervision
        # The container's network (networks.ContainerNetwork: attach(), ready(), release()), or None.
        self.network = None


def stop(root, container_id, signum, timeout, poll=0.05):
    """Send SIGNUM, wait up to TIMEOUT seconds, then SIGKILL every process; return once stopped."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
    current = lifecycle.state(root, container_id)
    if restart_pending(current):
        lifecycle.cancel_restart(root, container_id)
        current = lifecycle.state(root, container_id)  # the restart may have come first: then it runs
    if current["status"] == "paused":
        lifecycle.pause(root, container_id, frozen=False)  # a frozen process cannot act on a signal
    if current["status"] in LIVE:
        try:
            lifecycle.kill(root, container_id, signum)
        except OCIError:
            pass  # it stopped meanwhile
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if lifecycle.state(root, container_id)["status"] == "stopped":
                break
            time.sleep(poll)
        else:
            try:
                lifecycle.kill(root, container_id, signals.SIGKILL, all_processes=True)
            except OCIError:
                pass
    lifecycle.wait(root, container_id, timeout=max(timeout, KILL_SETTLE_SECONDS) + KILL_SETTLE_SECONDS)


def fresh_writable_layer(bundle, config):
    """Empty the writable layer of image bundle BUNDLE (CONFIG: the config it is created from, None: its
    config.json) before its container is made again: after a delete nothing has the overlay mounted."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio, overlay
    if config is None:
        with open(os.path.join(bundle, "config.json"), "rb") as handle:
            config = jsonio.loads(handle.read())
    if overlay.owns_writable_layer(overlay.parse_overlay(config.get("annotations"))):
        overlay.make_writable_layer(bundle)


def apply(root, container_id, bundle, actions, options):
    if not actions:
        return  # an unchanged container: the idempotent run need not import create (and all it imports)
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create, lifecycle
    for action in actions:
        if action.verb == "stop":
            stop(root, container_id, options.stop_signal, options.stop_timeout)
        elif action.verb == "delete":
            if options.network is not None:
                # The container is stopped: its network goes first, in this process, so that the poststop
                # hook (a new interpreter, for `ocirt delete --force`) finds nothing left to do.
                options.network.release()
            lifecycle.delete(root, container_id, force=True)
        elif action.verb == "create":
            if action.fresh_rootfs:
                fresh_writable_layer(bundle, options.config)
            if options.network is not None:
                options.network.attach()  # the namespace the config names must exist before create
            created = False
            try:
                create.create_monitored(root, container_id, bundle, systemd_cgroup=options.systemd_cgroup,
                                        config=options.config, supervision=options.supervision, **options.log)
                created = True
                if options.network is not None:
                    options.network.ready()  # its plugins ran while the container was made
            except BaseException:
                if options.network is not None:
                    options.network.release()  # a failed create leaves no attachment behind
                    if created:  # nor a container without its network
                        lifecycle.delete(root, container_id, force=True)
                raise
        elif action.verb == "start":
            lifecycle.start(root, container_id)
        elif action.verb == "resume":
            lifecycle.pause(root, container_id, frozen=False)
        elif action.verb == "update":
            lifecycle.update(root, container_id, action.resources)
        elif action.verb == "supervise":
            create.adopt_monitored(root, container_id)
        else:
            raise OCIError("unknown action %s" % action.verb)
