# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_containers' work: a whole host's containers converged in one module run.

Each item of `containers` takes the options of oci_container_state and of
oci_bundle (argument_specs.item_argument_spec(): built from theirs, never a
copy), and is converged by the same code as those modules: bundle_task.run()
once per distinct bundle, then container_state.run() per container. So an
item behaves exactly as the two tasks would.

Order: every item is validated first (any invalid item fails the task before
anything is touched); then the bundles, then the containers (and, with
exclusive, the removal of the containers the list does not name). Within
each phase the jobs are independent and run in parallel in worker
*processes* forked from the module, which is single-threaded then: the
runtime's create forks the container's monitor and runs Python in the
child, which is only safe when no other thread can hold a lock (import,
stdio, allocator) at the fork. A worker reports each result as one JSON
line over a pipe and leaves with os._exit (no atexit, nothing written to the
module's own stdout).

A failing item (a bad bundle, a create that fails) does not stop the
others: its result carries failed and msg, and the task fails at the end
naming every failed id.
"""
import json
import os
import selectors
import traceback

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bundle_task, container_state
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import (
    CONTAINER_STATE_REQUIRED_IF, bundle_argument_spec, container_state_argument_spec)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

DEFAULT_PARALLEL = 4
# oci_bundle's options an item does not take as such: its `bundle` is oci_bundle's path, its `state`
# the container's, the state root is the task's; force only applies to removing a bundle.
NOT_PER_ITEM = ("path", "state", "force", "state_root")


def item_argument_spec():
    """The options of one item of `containers`: oci_container_state's and oci_bundle's.

    A name both modules take must mean the same in both (it is passed to both);
    a clash is a programming error, raised here (and caught by the unit tests).
    """
    spec = container_state_argument_spec()
    del spec["state_root"]
    for name, option in bundle_argument_spec().items():
        if name in NOT_PER_ITEM:
            continue
        if name in spec and spec[name] != option:
            raise ValueError("option %s differs between oci_bundle and oci_container_state" % name)
        spec[name] = option
    spec.update(REMOVE_BUNDLE_ARGSPEC)
    return spec


def bundle_options():
    """The item options that describe its bundle (any of them given: the task manages the bundle)."""
    return tuple(name for name in bundle_argument_spec() if name not in NOT_PER_ITEM)


def validate(items):
    """(the items with every option filled in, their errors), each error naming containers[N]."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    validator = ArgumentSpecValidator(item_argument_spec(), required_if=CONTAINER_STATE_REQUIRED_IF)
    valid, errors, seen = [], [], {}
    for index, item in enumerate(items):
        where = "containers[%d]" % index
        if not isinstance(item, dict):
            errors.append("%s: must be a dict of options, not %s" % (where, type(item).__name__))
            valid.append(None)
            continue
        result = validator.validate(item)
        messages = [error.msg for error in result.errors.errors]
        params = result.validated_parameters
        container_id = params.get("id")
        if container_id is not None:
            where = "%s (id %s)" % (where, container_id)
            if container_id in seen:
                messages.append("id %s is also containers[%d]'s" % (container_id, seen[container_id]))
            seen.setdefault(container_id, index)
        errors.extend("%s: %s" % (where, message) for message in messages)
        params["managed_bundle"] = any(name in item for name in bundle_options())
        valid.append(params)
    if not errors:
        errors.extend(_bundle_clashes(valid))
        errors.extend(_remove_bundle_errors(valid))
    return valid, errors


def _bundle_clashes(items):
    """Errors for items that declare one bundle path differently (it can only be one of them)."""
    errors, first = [], {}
    for index, item in enumerate(items):
        if item["state"] == "absent" or not item["managed_bundle"]:
            continue
        path = os.path.abspath(item["bundle"])
        declared = dict((name, item[name]) for name in bundle_options())
        if path not in first:
            first[path] = (index, declared)
            continue
        other, other_declared = first[path]
        differing = sorted(name for name in declared if declared[name] != other_declared[name])
        if differing:
            errors.append("containers[%d] (id %s): bundle %s is also containers[%d]'s, with other %s"
                          % (index, item["id"], path, other, ", ".join(differing)))
    return errors


def _bundle_params(item, state_root):
    params = dict((name, item[name]) for name in bundle_options())
    params.update(path=os.path.abspath(item["bundle"]), state="present", force=False, state_root=state_root)
    return params


def _container_params(item, state_root):
    params = dict((name, item[name]) for name in container_state_argument_spec() if name != "state_root")
    params["state_root"] = state_root
    return params


def _removal_params(container_id, state_root):
    """oci_container_state's parameters for state=absent of CONTAINER_ID, its defaults otherwise."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    params = ArgumentSpecValidator(container_state_argument_spec()).validate(
        dict(id=container_id, state="absent", state_root=state_root)).validated_parameters
    return params


def _failure(exc):
    if isinstance(exc, OCIError):
        return str(exc)
    # Not the runtime's own error: a bug to report, with where it happened, but never a bare traceback.
    frames = traceback.extract_tb(exc.__traceback__)
    where = " at %s:%d" % (os.path.basename(frames[-1].filename), frames[-1].lineno) if frames else ""
    return "%s: %s%s" % (type(exc).__name__, exc, where)


def _converge_bundle(job, check_mode, diff):
    try:
        result = bundle_task.run(job, check_mode=check_mode, diff=diff)
        result["failed"] = False
    except Exception as exc:  # one bundle's failure is its items' result, not the task's end
        result = dict(path=job["path"], changed=False, actions=[], failed=True,
                      msg=bundle_task.failure_message(job["path"], OCIError(_failure(exc))))
    return result


def _converge_container(job, check_mode, diff):
    params, bundle_config = job
    try:
        result = container_state.run(params, check_mode=check_mode, diff=diff, known_config=bundle_config)
        result["failed"] = False
    except Exception as exc:  # one container's failure is its result; the others go on
        message = exc if isinstance(exc, OCIError) else OCIError(_failure(exc))
        result = dict(changed=False, actions=[], container=None)
        # A failure after the task changed the host (a job that outlived its timeout or ended with an
        # unexpected code, a container that did not become healthy) says what it did, as the module does.
        if isinstance(exc, container_state.TaskFailed):
            result.update(exc.result)
        result.update(failed=True, msg=container_state.failure_message(params["id"], message))
    result["id"] = params["id"]
    return result


def parallel_map(function, jobs, workers):
    """[function(job) for job in jobs], in up to WORKERS forked processes; results are JSON data.

    A worker that dies before reporting a job leaves that job's result as
    {failed, msg} saying so.
    """
    count = min(workers, len(jobs))
    if count <= 1:
        return [function(job) for job in jobs]
    results = [None] * len(jobs)
    pipes = {}
    for worker in range(count):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(read_end)
                with os.fdopen(write_end, "w") as out:
                    for index in range(worker, len(jobs), count):
                        out.write(json.dumps([index, function(jobs[index])]) + "\n")
                        out.flush()
            except BaseException:
                code = 1
            os._exit(code)
        os.close(write_end)
        pipes[read_end] = (pid, b"")
    with selectors.DefaultSelector() as selector:
        for fd in pipes:
            selector.register(fd, selectors.EVENT_READ)
        while pipes:
            for key, _events in selector.select():
                fd = key.fd
                chunk = os.read(fd, 65536)
                pid, pending = pipes[fd]
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    index, result = json.loads(line.decode("utf-8"))
                    results[index] = result
                if chunk:
                    pipes[fd] = (pid, pending)
                    continue
                selector.unregister(fd)
                os.close(fd)
                del pipes[fd]
                os.waitpid(pid, 0)
    for index, result in enumerate(results):
        if result is None:
            results[index] = dict(changed=False, actions=[], failed=True,
                                  msg="the worker process converging it exited before reporting")
    return results


def run(params, check_mode=False, diff=False):
    """Converge params['containers']; return the module's result (failed set when any item failed).

    OCIError when the items are invalid: then nothing was touched.
    """
    state_root = params["state_root"]
    workers = params["parallel"]
    if workers < 1:
        raise OCIError("parallel: must be 1 or more, not %d" % workers)
    if params.get("single") and len(params["containers"]) != 1:
        raise OCIError("single: needs exactly one item in containers, not %d" % len(params["containers"]))
    items, errors = validate(params["containers"])
    if errors:
        raise OCIError("invalid containers, nothing done: " + "; ".join(errors))
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import validate_id
    for index, item in enumerate(items):
        try:
            validate_id(item["id"])
        except OCIError as exc:
            raise OCIError("invalid containers, nothing done: containers[%d]: %s" % (index, exc))

    # Phase 1: each bundle the items declare, once.
    bundle_jobs, bundle_index = [], {}
    for item in items:
        if item["state"] != "absent" and item["managed_bundle"]:
            job = _bundle_params(item, state_root)
            if job["path"] not in bundle_index:
                bundle_index[job["path"]] = len(bundle_jobs)
                bundle_jobs.append(job)
    bundles = parallel_map(lambda job: _converge_bundle(job, check_mode, diff), bundle_jobs, workers)

    # Phase 2: the containers, and those the list does not name when exclusive.
    jobs, slots = [], []
    results = [None] * len(items)
    for index, item in enumerate(items):
        bundle_config = None
        if item["managed_bundle"] and item["state"] != "absent":
            outcome = bundles[bundle_index[os.path.abspath(item["bundle"])]]
            if outcome["failed"]:
                results[index] = dict(id=item["id"], changed=False, actions=[], container=None, failed=True,
                                      msg="container %s: %s" % (item["id"], outcome["msg"]))
                continue
            if check_mode and outcome["changed"]:
                bundle_config = outcome["config"]  # not written in check mode: plan with what it would be
        jobs.append((_container_params(item, state_root), bundle_config))
        slots.append(index)
    removed_ids = []
    if params["exclusive"]:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations.lifecycle import (
            list_containers)
        named = set(item["id"] for item in items)
        removed_ids = sorted(s["id"] for s in list_containers(state_root) if s["id"] not in named)
        jobs.extend((_removal_params(container_id, state_root), None) for container_id in removed_ids)
    outcomes = parallel_map(lambda job: _converge_container(job, check_mode, diff), jobs, workers)
    for slot, outcome in zip(slots, outcomes):
        results[slot] = outcome
    bundles = bundles + _remove_bundles(items, results, state_root, check_mode, diff, workers)
    removed = outcomes[len(slots):]
    for outcome, container_id in zip(removed, removed_ids):
        outcome["id"] = container_id

    result = _result(bundles, results, removed, diff)
    return single_result(result) if params.get("single") else result


# -- remove_bundle: an item's bundle removed with its container (the role's removal in one task) ----------

# Not an option of either module: oci_container_state never touches a bundle, and oci_bundle's own removal
# (state=absent) is its `state`, which an item's `state` (the container's) already names.
REMOVE_BUNDLE_ARGSPEC = dict(remove_bundle=dict(type="bool", default=False))


def _remove_bundle_errors(items):
    errors = []
    for index, item in enumerate(items):
        if item["remove_bundle"] and (item["state"] != "absent" or not item["bundle"]):
            errors.append("containers[%d] (id %s): remove_bundle: needs state=absent and bundle (the directory "
                          "to remove after the container)" % (index, item["id"]))
    return errors


def _remove_bundles(items, results, state_root, check_mode, diff, workers):
    """After the containers: the bundles of items with remove_bundle, once each, as oci_bundle state=absent.

    Without force: a bundle that another container still uses is refused (that container is named), not
    deleted with it. An item whose container could not be removed keeps its bundle; an item whose bundle
    removal fails is failed with that message.
    """
    jobs, owners = [], {}
    for index, item in enumerate(items):
        if not item["remove_bundle"] or results[index]["failed"]:
            continue
        path = os.path.abspath(item["bundle"])
        if path not in owners:
            owners[path] = []
            jobs.append(dict(path=path, state="absent", force=False, state_root=state_root))
        owners[path].append(index)
    leaving = dict((job["path"], set(items[index]["id"] for index in owners[job["path"]])) for job in jobs)
    outcomes = parallel_map(lambda job: _remove_bundle(job, leaving[job["path"]], check_mode, diff), jobs, workers)
    for job, outcome in zip(jobs, outcomes):
        for index in owners[job["path"]]:
            if outcome["failed"]:
                results[index].update(failed=True, msg="container %s: %s" % (items[index]["id"], outcome["msg"]))
    return outcomes


def _remove_bundle(job, leaving, check_mode, diff):
    """oci_bundle state=absent of JOB; in check mode the containers LEAVING (this task's removals, not done
    in check mode) do not count as the bundle's users, as they will not when it runs."""
    if not check_mode:
        return _converge_bundle(job, check_mode, diff)
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle.bundle import users_of
    others = [cid for cid in users_of(job["path"], job["state_root"]) if cid not in leaving]
    result = _converge_bundle(dict(job, force=not others), check_mode, diff)
    result["actions"] = [action for action in result["actions"]
                         if action not in set("delete container %s" % cid for cid in leaving)]
    result["changed"] = bool(result["actions"])
    return result


# -- single: one container's task, its result shaped as oci_container_state's (the role's deploy and removal) --

SINGLE_ARGSPEC = dict(single=dict(type="bool", default=False))


def single_result(result):
    """RESULT of a one-item task with that container's result at the top level (id, actions, container, msg,
    exit_code, ...), as oci_container_state returns it, beside bundles/containers/removed; changed is the
    task's (the bundle's too); a failure's msg is the container's own."""
    item = result["containers"][0]
    flat = dict((key, value) for key, value in item.items() if key != "failed")
    flat.update((key, result[key]) for key in ("changed", "bundles", "containers", "removed", "diff") if key in result)
    if result.get("failed"):
        flat["failed"] = True
        flat["msg"] = item["msg"] if item["failed"] else result["msg"]
    return flat


def _result(bundles, results, removed, diff):
    everything = results + removed
    result = dict(changed=any(r["changed"] for r in bundles + everything), bundles=bundles,
                  containers=results, removed=removed)
    if diff:
        before = dict(bundles={}, containers={})
        after = dict(bundles={}, containers={})
        for outcome in bundles:
            change = outcome.pop("diff", None)
            if change and change["before"] != change["after"]:
                before["bundles"][outcome["path"]] = change["before"]
                after["bundles"][outcome["path"]] = change["after"]
        for outcome in everything:
            change = outcome.pop("diff", None)
            if change and change["before"] != change["after"]:
                before["containers"][outcome["id"]] = change["before"]
                after["containers"][outcome["id"]] = change["after"]
        result["diff"] = dict(before=before, after=after)
    failed = [r["id"] for r in everything if r["failed"]]
    failed_bundles = [b["path"] for b in bundles if b["failed"]]
    if failed:
        result["failed"] = True
        result["msg"] = "%d of %d containers failed: %s%s (each one's msg says why; the others were converged)" % (
            len(failed), len(everything), ", ".join(failed),
            "; bundles failed: " + ", ".join(failed_bundles) if failed_bundles else "")
    return result
