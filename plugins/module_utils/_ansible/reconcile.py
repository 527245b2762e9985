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
import signal as signals
import time

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# linux.resources groups that `update` can change on a live container.
UPDATABLE_RESOURCES = ("memory", "cpu", "pids", "blockIO", "hugepageLimits", "unified")
# Fields whose removal means "no limit" rather than a recreate.
_UNLIMITED = {("memory", "limit"): -1, ("memory", "swap"): -1, ("memory", "reservation"): -1,
              ("pids", "limit"): -1, ("cpu", "quota"): -1}

LIVE = ("created", "running", "paused")


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
    def __init__(self, verb, reason=None, resources=None):
        self.verb = verb
        self.reason = reason
        self.resources = resources

    def describe(self):
        if self.verb == "update":
            return "update: %s" % ", ".join(sorted(self.resources))
        return "%s: %s" % (self.verb, self.reason) if self.reason else self.verb

    def __repr__(self):
        return "Action(%s)" % self.describe()


def plan(current, current_config, desired_config, desired_bundle, want, recreate=False, restart=False,
         job=False):
    """The actions that take a container from CURRENT (its state dict, or None) to WANT.

    WANT is created, running, stopped or absent. JOB: a stopped container of
    the same config is a finished job, not one to start again.
    """
    actions = []
    status = current["status"] if current else None
    if want == "absent":
        if status in LIVE:
            actions.append(Action("stop"))
        if current:
            actions.append(Action("delete"))
        return actions
    if current:
        reasons = []
        updates = {}
        if current.get("bundle") != desired_bundle:
            reasons.append("bundle changed from %s to %s" % (current.get("bundle"), desired_bundle))
        if not reasons:
            updates, reasons = compare(current_config, desired_config)
        if recreate:
            reasons.append("recreate requested")
        if restart and want == "running" and status in ("running", "paused", "stopped"):
            reasons.append("restart requested")
        if want == "created" and status != "created" and not reasons:
            reasons.append("wanted created, is %s" % status)
        if want == "running" and status == "stopped" and not job and not reasons:
            reasons.append("stopped, wanted running")
        if reasons:
            if status in LIVE:
                actions.append(Action("stop", reasons[0]))
            actions.append(Action("delete", reasons[0]))
            actions.append(Action("create", "recreate: " + "; ".join(reasons)))
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
    return actions


class Options:
    """How apply does its work: monitor logging, stopping, waiting."""

    def __init__(self, stop_signal="SIGTERM", stop_timeout=10.0, log_path=None, log_max_size=None,
                 log_max_files=None, wait_timeout=None):
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.log_path = log_path
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self.wait_timeout = wait_timeout

    def log_kwargs(self):
        kwargs = {}
        if self.log_path:
            kwargs["log_path"] = self.log_path
        if self.log_max_size is not None:
            kwargs["log_max_size"] = self.log_max_size
        if self.log_max_files is not None:
            kwargs["log_max_files"] = self.log_max_files
        return kwargs


def signal_number(name):
    """SIGTERM, TERM or 15 -> 15."""
    text = str(name).upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    number = getattr(signals, text, None)
    if not isinstance(number, int):
        raise OCIError("stop_signal: unknown signal %r" % name)
    return int(number)


def stop(root, container_id, stop_signal, timeout, poll=0.05):
    """Signal, wait up to TIMEOUT seconds, then SIGKILL every process; return once stopped."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
    current = lifecycle.state(root, container_id)
    if current["status"] == "paused":
        lifecycle.pause(root, container_id, frozen=False)  # a frozen process cannot act on a signal
    if current["status"] in LIVE:
        try:
            lifecycle.kill(root, container_id, signal_number(stop_signal))
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
    lifecycle.wait(root, container_id, timeout=max(timeout, 10.0) + 10.0)


def apply(root, container_id, bundle, actions, options):
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create, lifecycle
    for action in actions:
        if action.verb == "stop":
            stop(root, container_id, options.stop_signal, options.stop_timeout)
        elif action.verb == "delete":
            lifecycle.delete(root, container_id, force=True)
        elif action.verb == "create":
            create.create_monitored(root, container_id, bundle, **options.log_kwargs())
        elif action.verb == "start":
            lifecycle.start(root, container_id)
        elif action.verb == "resume":
            lifecycle.pause(root, container_id, frozen=False)
        elif action.verb == "update":
            lifecycle.update(root, container_id, action.resources)
        else:
            raise OCIError("unknown action %s" % action.verb)
