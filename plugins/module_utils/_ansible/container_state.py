# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_container_state's work: where the container is, what to do about it, doing it, the result.

The module hands its parameters to run() and reports what comes back; an
OCIError is the task's failure (failure_message() words it). Reading the
container goes through the runtime's own reader (state.Container), under
the container's lock, as `ocirt state` does; planning and applying are
reconcile's. Nothing here knows AnsibleModule.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import labels, reconcile, supervision
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import CGROUP_MANAGERS
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.results import container_result
from ansible_collections.daemonless.oci.plugins.module_utils._network.hostname import choose_hostname, with_hostname
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import NotFound, OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import validate_id
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import parse_signal


class TaskFailed(OCIError):
    """The task failed after it changed the host (a job that outlived its timeout, a container that did
    not become healthy): RESULT says what it did (changed, actions, container), for the module's
    failure result."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def default_cgroup_manager(systemd_is_pid1, layout_mode):
    """cgroup_manager when the task gives none: systemd where systemd manages the host and the
    cgroup layout is pure v2, else cgroupfs (podman's choice). On v1 and hybrid hosts systemd
    delegates poorly, so the runtime's own cgroups stay the default there."""
    return "systemd" if systemd_is_pid1 and layout_mode == "v2" else "cgroupfs"


def host_cgroup_manager():
    """default_cgroup_manager for this host: PID 1 is systemd when /run/systemd/system exists
    (sd_booted's test), the layout is the runtime's reading of the mounts."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import Layout
    return default_cgroup_manager(os.path.isdir("/run/systemd/system"), Layout.detect().mode)


def with_cgroup_manager(config, manager, container_id):
    """CONFIG as create makes it with MANAGER: with systemd, its linux.cgroupsPath as the driver
    takes it (empty: the scope ocirt-<id>.scope in system.slice), so that the plan compares what
    the container would really get, and a change of manager recreates it."""
    if manager not in CGROUP_MANAGERS:
        raise OCIError("cgroup_manager: must be one of %s, not %r" % (", ".join(CGROUP_MANAGERS), manager))
    if manager == "cgroupfs":
        return config
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
    linux = config.get("linux") or {}
    path = systemd.driver_path(linux.get("cgroupsPath"), container_id, option="cgroup_manager=systemd")
    return dict(config, linux=dict(linux, cgroupsPath=path))


def desired(bundle_config, params, manager):
    """The config the container must run with: the bundle's, with what the task's own options add.

    The container is created from this (never from config.json alone), and the
    plan compares it with the running container's, so a change of any option
    that adds to it recreates the container. Each addition is one function
    taking and returning a config, applied in this order.
    """
    config = with_cgroup_manager(bundle_config, manager, params["id"])
    config = labels.with_labels(config, params.get("labels"))
    if params.get("secrets"):  # secrets.py (hmac, json, re, ...) is imported only for a task that has secrets
        from ansible_collections.daemonless.oci.plugins.module_utils._ansible import secrets
        config = secrets.with_secrets(config, params)
    config = supervision.with_supervision(config, params)
    config = network_config(config, params)
    return config


def apply_with_secrets(root, container_id, bundle, actions, options, params):
    """reconcile.apply, with the task's secrets written before a create (so a failure leaves the old
    container as it was) and removed with the container (absent, or a create that failed)."""
    creates = any(action.verb == "create" for action in actions)
    if not creates and params["state"] != "absent":
        reconcile.apply(root, container_id, bundle, actions, options)  # no secret is written or removed
        return
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import secrets
    if creates:
        secrets.deliver(options.config, params)
    try:
        reconcile.apply(root, container_id, bundle, actions, options)
    except BaseException:
        if creates and observe(root, container_id)[0] is None:
            secrets.remove(root, container_id)
        raise
    if params["state"] == "absent":
        secrets.remove(root, container_id)


def observe(root, container_id):
    """(its state as `ocirt state` prints it, the config it runs with), or (None, None) when it does not exist.

    The config is the one it was created from, with the resources it was updated to since.
    """
    try:
        with Container.open(root, container_id) as container:
            return container.oci_state(), reconcile.effective_config(container.config(),
                                                                     container.read().get("resources"))
    except NotFound:
        return None, None


def log_tail(root, container_id, count):
    """The last COUNT lines of the container's log, stdout and stderr in order; [] when it has no log."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import logs
    try:
        path, max_files, _still_running = lifecycle.log_source(root, container_id)
    except OCIError:
        return []
    records = logs.select_records(logs.read_records(path, max_files), tail=count)
    return [record.text.decode("utf-8", "replace") for record in records]


def bundle_config(bundle, check_mode):
    """(the bundle's config, None), or in check mode, when no config.json is there yet, (None, why):
    the oci_bundle task before this one made nothing in check mode, and the plan still must be told."""
    if not os.path.lexists(os.path.join(bundle, "config.json")):
        if check_mode:
            return None, "bundle %s not made yet (check mode)" % bundle
        raise OCIError("bundle: %s has no config.json (make the bundle with daemonless.oci.oci_bundle first)"
                       % bundle)
    return spec.load_bundle(bundle)[0], None


def summary(container_id, actions, status, check_mode=False, exit_code=None):
    """The result's msg: what the task did (or would do) and where that leaves the container."""
    done = ", ".join(actions) if actions else "nothing to do"
    if check_mode and actions:
        done = "would " + done
    now = "does not exist" if status == "absent" else status
    if exit_code is not None:
        now = "job exited with code %s" % exit_code
    return "container %s: %s; %s%s" % (container_id, done, now, " (check mode)" if check_mode else "")


def status_text(state):
    """STATE's status for a message (STATE None: absent); a stopped container its policy restarts says so."""
    if state is None:
        return "absent"
    if reconcile.restart_pending(state):
        return "stopped, its restart due (restart_policy %s)" % state.get("restartPolicy")
    return state["status"]


def failure_message(container_id, exc):
    """The task's error: the runtime's message, naming the container once."""
    message = str(exc)
    prefix = "container %s: " % container_id
    return message if message.startswith(prefix) else prefix + message


def unexpected_exit(container_id, result, expected):
    """The message of a job whose exit code is not among EXPECTED (with the tail of its log)."""
    return "container %s: job exited with code %s%s, expected %s; its last output: %s" % (
        container_id, result["exit_code"], " (killed by the OOM killer)" if result["oom_killed"] else "",
        " or ".join(str(code) for code in expected), " | ".join(result["logs_lines"]) or "(none)")


def run(params, check_mode=False, diff=False, known_config=None):
    """Bring the container to params['state']; return the module's result (OCIError when it cannot).

    KNOWN_CONFIG: the bundle's config when the caller knows it better than the
    bundle's config.json (oci_containers in check mode: the config a bundle
    it did not write would have); None reads and validates config.json.
    """
    root = params["state_root"]
    container_id = params["id"]
    validate_id(container_id)
    for name in ("timeout", "logs_lines"):
        if params[name] < 0:
            raise OCIError("%s: must be 0 or more, not %d" % (name, params[name]))
    parse_signal(params["stop_signal"], "stop_signal")  # before anything is read or done, whatever the state
    if os.path.lexists(root) and not os.path.isdir(root):
        raise OCIError("state_root: %s is not a directory" % root)
    # Deleting needs no manager: the container's cgroup (or scope) is recorded with it.
    absent = params["state"] == "absent"
    manager = None if absent else params.get("cgroup_manager") or host_cgroup_manager()
    if manager == "systemd":
        # Refused before the plan: a recreate must not delete the old container and then fail.
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
        reason = systemd.available()
        if reason:
            raise OCIError("cgroup_manager=systemd: %s; use cgroup_manager=cgroupfs" % reason)
    current, current_config = observe(root, container_id)
    desired_config = bundle = unknown = bundle_cfg = None
    if not absent and params.get("bundle"):  # stopped needs no bundle: it only stops what runs
        bundle = os.path.abspath(params["bundle"])
        if known_config is not None:
            bundle_cfg, unknown = known_config, None
        else:
            bundle_cfg, unknown = bundle_config(bundle, check_mode)
        if bundle_cfg is not None:
            desired_config = desired(bundle_cfg, params, manager)
    options = reconcile.Options(stop_signal=params["stop_signal"], stop_timeout=params["stop_timeout"],
                                log_path=params["log_path"], log_max_size=params["log_max_size"],
                                log_max_files=params["log_max_files"],
                                systemd_cgroup=manager == "systemd", config=desired_config,
                                supervision=None if absent else supervision.supervision_of(params))
    # Networks: attached before create, released when stopped, before delete (reconcile.apply calls it).
    options.network = container_network(params, bundle_cfg)
    job = params["wait"] == "exited"
    actions = reconcile.plan(current, current_config, desired_config, bundle, params["state"],
                             recreate=params["recreate"], restart=params["restart"], job=job, unknown=unknown)
    adopt = supervision.adoption(current, actions)
    if adopt is not None:
        actions.append(adopt)
    if params["wait"] == "healthy" and not (params.get("healthcheck") and params["state"] == "running"):
        raise OCIError("wait=healthy: needs a healthcheck and state=running")
    if params.get("expected_exit_codes") and not job:
        raise OCIError("expected_exit_codes: only with wait=exited (a job's exit code)")
    # A network that an interrupted task left behind (the container itself never made) goes with `absent`.
    network_leftover = absent and not actions and has_attachment(root, container_id)
    # A running container kept as it is whose network drifted (CNI CHECK) is re-attached in place.
    network_repair = network_repair_needed(root, container_id, params, current, actions)
    result = dict(changed=bool(actions) or network_leftover or bool(network_repair),
                  actions=[action.describe() for action in actions])
    if network_leftover:
        result["actions"].append("release network: left by an interrupted task")
    if network_repair:
        result["actions"].append("repair network: %s" % "; ".join(network_repair))
    if not absent:
        result["cgroup_manager"] = manager
    if diff:
        result["diff"] = dict(
            before=dict(status=current["status"] if current else "absent", config=current_config or {}),
            after=dict(status=reconcile.status_after(current, actions), config=desired_config or {}))
    if check_mode:
        result["container"] = container_result(current)
        status = reconcile.status_after(current, actions)
        result["msg"] = summary(container_id, result["actions"], status_text(current) if not actions else status, True)
        return result
    apply_with_secrets(root, container_id, bundle, actions, options, params)
    if network_leftover or network_repair:
        from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks
        if network_leftover:
            networks.release(root, container_id, params.get("cni_path"))
        if network_repair:
            networks.repair(root, container_id, current)
    final = observe(root, container_id)[0]
    if job and final is not None:
        try:
            final = lifecycle.wait(root, container_id, timeout=params["timeout"] or None)
        except OCIError as exc:
            result["container"] = container_result(observe(root, container_id)[0])
            raise TaskFailed(str(exc), result)
        result["exit_code"] = final.get("exitCode")
        result["oom_killed"] = bool(final.get("oomKilled"))
        result["logs_lines"] = log_tail(root, container_id, params["logs_lines"])
        expected = params.get("expected_exit_codes")
        if expected and result["exit_code"] not in expected:
            result["container"] = container_result(final)
            raise TaskFailed(unexpected_exit(container_id, result, expected), result)
    if params["wait"] == "healthy" and final is not None:
        try:
            final = supervision.wait_healthy(lambda: observe(root, container_id)[0], container_id, params["timeout"])
        except OCIError as exc:
            # As for a job: the task made or started the container, and says so with the failure.
            result["container"] = container_result(observe(root, container_id)[0])
            raise TaskFailed(str(exc), result)
    result["container"] = container_result(final)
    result["msg"] = summary(container_id, result["actions"], status_text(final), exit_code=result.get("exit_code"))
    return result


# --------------------------------------------------------------------------
# The network code only when needed.
#
# The network code (networks.py, _network's attachment, conflist, ports,
# drift ...) was imported by every run, since every container gets its
# hostname there and a container that had a network must release it when it
# is deleted or made again. It is imported only for a task with network
# options (anything but network none and no DNS, hosts or ports options) or a
# container with an attachment recorded (its directory in the state root's
# network area: made before its create, removed by its release). Any other
# container gets only its hostname (the leaf _network/hostname.py), as network
# none gives it. (Here rather than in a file of its own: ocirt-boot runs this
# file from the role's copy of the glue.)

# cni.NETWORK_AREA (kept equal by a test): cni.py runs alone as the poststop hook and imports nothing of
# ours, and importing it here would load what this block exists to spare.
NETWORK_AREA = "=network"
# The options that ask the network code for something (request_from refuses them with network none).
NETWORK_OPTIONS = ("publish", "ip", "dns_servers", "dns_search", "etc_hosts")


def asks_network(params):
    """Whether the task's options ask for a network of any kind."""
    return params.get("network") not in (None, "none", ["none"]) or any(params.get(o) for o in NETWORK_OPTIONS)


def has_attachment(root, container_id):
    return os.path.isdir(os.path.join(os.path.abspath(root), NETWORK_AREA, container_id))


def network_config(config, params):
    """CONFIG with what the task's network options add (desired's step): the hostname alone without any."""
    if not asks_network(params):
        return with_hostname(config, choose_hostname(config, params))
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks
    return networks.container_config(config, params)


def container_network(params, bundle_config):
    """reconcile.Options.network: networks.ContainerNetwork, or None when neither the task nor the container
    has a network (nothing to attach, nothing to release)."""
    if not asks_network(params) and not has_attachment(params["state_root"], params["id"]):
        return None
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks
    return networks.ContainerNetwork(params, bundle_config)


def network_repair_needed(root, container_id, params, current, actions):
    """networks.repair_needed, for a container with an attachment ([] otherwise)."""
    if not has_attachment(root, container_id):
        return []
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks
    return networks.repair_needed(root, container_id, params, current, actions)
