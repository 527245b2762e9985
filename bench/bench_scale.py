# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks 4 and 5: ocirt with many containers (command times), and its monitors' memory."""
import json
import os
import time

import benchlib as bl

SCALE_COUNTS = (1, 10, 100, 200)
MEMORY_COUNTS = (1, 10, 100)
SLEEP_ARGS = ["sleep", "1000000"]
FLAT_STATE = 1.25   # state at the largest count / at 1 container: above this it is not flat
FLAT_LIST_PER_ENTRY_MS = 0.5   # list may grow with the entries it prints, by at most this per entry
MONITOR_PSS_LIMIT_KIB = 3 * 1024
SETTLE_SECONDS = 1.0      # the monitor gives memory back after 0.5 s without an event (monitor.RELEASE_IDLE)
HEALTH_INTERVAL = "30s"   # podman's default


def _ocirt(ws, name):
    runtime = bl.make_runtimes(os.path.join(ws.path, "state"), names=("ocirt",))[0]
    runner = bl.Runner(ws.path)
    ws.on_exit(runtime.cleanup, runner)
    bundle = bl.busybox_bundle(os.path.join(ws.path, "bundle-" + name), SLEEP_ARGS)
    return runtime, runner, bundle


def _delete_all(runtime, runner):
    """delete --force every container, timing each; the per-container times in ms."""
    times = []
    for container_id in list(runtime.ids):
        times.append(bl.ms(runner.time(runtime.cmd("delete", "--force", container_id))[0]))
        runtime.ids.remove(container_id)
    return times


def _timed_state(runner, runtime, container_id):
    elapsed, _code, text = runner.time(runtime.cmd("state", container_id), capture=True)
    if bl.state_status(text) != "running":
        raise bl.BenchError("container %s: %s, not running" % (container_id, bl.state_status(text)))
    return bl.ms(elapsed)


def _timed_list(runner, runtime, expected):
    elapsed, _code, text = runner.time(runtime.cmd("list"), capture=True)
    listed = len(text.splitlines()) - 1
    if listed != expected:
        raise bl.BenchError("ocirt list printed %d containers, %d expected" % (listed, expected))
    return bl.ms(elapsed)


def _measure_at(runner, runtime, control, count, reps):
    """state (first, newest) and list of the big root, alternated with the same on the control root."""
    times = {"state first": [], "state newest": [], "list": [], "control state": [], "control list": []}
    for rep in range(reps):
        for job in bl.order(list(times), rep):
            if job == "list":
                times[job].append(_timed_list(runner, runtime, count))
            elif job == "control list":
                times[job].append(_timed_list(runner, control, 1))
            elif job == "control state":
                times[job].append(_timed_state(runner, control, control.ids[0]))
            else:
                times[job].append(_timed_state(runner, runtime, runtime.ids[0 if job == "state first" else -1]))
    ratios = {
        "state / control state": bl.paired_ratios(
            [(a + b) / 2.0 for a, b in zip(times["state first"], times["state newest"])], times["control state"]),
        "list / control list": bl.paired_ratios(times["list"], times["control list"]),
    }
    extra = [(a - b) / (count - 1) for a, b in zip(times["list"], times["control list"])] if count > 1 else []
    return times, ratios, extra


def bench_scale(quick, prefix):
    """create + start up to 200 sleeping containers; state and list at 1, 10, 100, 200.

    Each count's state and list times are paired, round by round, with the same commands on a
    control state root that always holds one container: load that changes between counts
    moves both alike, and the ratios show what the count itself costs.
    """
    reps = 5 if quick else 15
    rows, points = [], []
    with bl.Workspace("scale") as ws:
        runtime, runner, bundle = _ocirt(ws, "sleep")
        control = bl.Runtime("ocirt", [bl.OCIRT], os.path.join(ws.path, "state-control"))
        ws.on_exit(control.cleanup, runner)
        control.ids.append(prefix + "-control")
        runner.time(control.cmd("create", "--bundle", bundle, control.ids[0]))
        runner.time(control.cmd("start", control.ids[0]))
        for count in SCALE_COUNTS:
            create_start = []
            while len(runtime.ids) < count:
                container_id = "%s-%d" % (prefix, len(runtime.ids))
                runtime.ids.append(container_id)
                created = runner.time(runtime.cmd("create", "--bundle", bundle, container_id))[0]
                started = runner.time(runtime.cmd("start", container_id))[0]
                create_start.append(bl.ms(created + started))
            times, ratios, extra = _measure_at(runner, runtime, control, count, reps)
            point = {"count": count, "create_start_ms": bl.summary(create_start),
                     "ms": {name: bl.summary(values) for name, values in times.items()},
                     "ratios": ratios, "list_extra_ms_per_container": bl.summary(extra) if extra else None,
                     "samples_ms": times, "load": bl.load()}
            points.append(point)
            rows.append([count, bl.fmt_ms(point["create_start_ms"]["median"]), len(create_start)]
                        + [bl.fmt_ms(point["ms"][name]["median"]) for name in times]
                        + [bl.fmt_ratio(ratios["state / control state"]), bl.fmt_ratio(ratios["list / control list"]),
                           "-" if not extra else "%.3f ms" % bl.median(extra), "%.2f" % point["load"]["load1"]])
        delete_times = _delete_all(runtime, runner)
    last = points[-1]
    state_ratio = last["ratios"]["state / control state"]["median"]
    per_entry = last["list_extra_ms_per_container"]["median"]
    create_ratio = last["create_start_ms"]["median"] / points[1]["create_start_ms"]["median"]
    targets = [
        {"name": "scale: state at %d / control (1 container)" % last["count"], "value": state_ratio,
         "limit": FLAT_STATE, "met": state_ratio <= FLAT_STATE},
        {"name": "scale: list, ms per extra container at %d" % last["count"], "value": per_entry,
         "limit": FLAT_LIST_PER_ENTRY_MS, "met": per_entry <= FLAT_LIST_PER_ENTRY_MS},
    ]
    text = ("ocirt create+start of sleeping containers (plain create, runc-style); at each count `state` (of the "
            "first and the newest) and `list`, %d reps each,\nalternated with the same commands on a control root "
            "holding 1 container (ratios: medians of paired ratios)\n%s\n"
            "  create+start at %d / at 10: %.2fx (medians, unpaired)\n"
            "  delete --force of each running container: median %s (n=%d)\n%s"
            % (reps, bl.table(rows, ["containers", "create+start each", "n", "state first", "state newest", "list",
                                     "ctl state", "ctl list", "state/ctl", "list/ctl", "list extra/container",
                                     "load1"]),
               last["count"], create_ratio, bl.fmt_ms(bl.median(delete_times)), len(delete_times),
               bl.targets_text(targets)))
    return {"points": points, "delete_force_ms": bl.summary(delete_times), "state_ratio": state_ratio,
            "list_ms_per_extra_container": per_entry, "create_start_ratio_vs_10": create_ratio,
            "targets": targets}, text


def smaps_rollup(pid):
    """{field: kB} of /proc/PID/smaps_rollup (Rss, Pss, Private_Dirty, ...)."""
    fields = {}
    with open("/proc/%d/smaps_rollup" % pid) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def _monitor_pid(runner, runtime, container_id):
    _elapsed, _code, text = runner.time(runtime.cmd("state", container_id), capture=True)
    state = json.loads(text)
    pid = state.get("monitorPid")
    if not pid:
        raise bl.BenchError("container %s: no live monitor in its state: %s" % (container_id, text.strip()))
    return pid


# The supervised variant: `ocirt run --detach` with a restart policy and a health check, through
# the API (the CLI has --restart but no health check option), as oci_container_state starts them.
SUPERVISED_RUN = """
import sys
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import run
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor.supervise import checked_supervision
root, bundle, container_id = sys.argv[1:4]
check = {"test": ["true"], "interval": "%s", "timeout": "5s", "retries": 3}
supervision = checked_supervision(restart="always", healthcheck=check)
run.run(root, container_id, bundle, detach=True, log_options={"supervision": supervision})
""" % HEALTH_INTERVAL


def _run_detached(runtime, runner, bundle, container_id, supervised):
    if not supervised:
        return runner.time(runtime.cmd("run", "--detach", "--bundle", bundle, container_id))[0]
    env = dict(os.environ, PYTHONPATH=os.path.join(bl.VENV, "collections"))
    return runner.time([bl.VENV_PYTHON, "-c", SUPERVISED_RUN, runtime.root, bundle, container_id], env=env)[0]


def _health_checked(runner, runtime, container_ids):
    """True once every container's health check has run at least once."""
    for container_id in container_ids:
        _elapsed, _code, text = runner.time(runtime.cmd("state", container_id), capture=True)
        if not (json.loads(text).get("health") or {}).get("lastCheck"):
            return False
    return True


def bench_memory(quick, prefix):
    """PSS of the monitors of 1, 10 and 100 containers started with `ocirt run --detach`, plain and supervised."""
    results, texts = {}, []
    for supervised in (False, True):
        result, text = _bench_memory(prefix + ("-s" if supervised else ""), supervised)
        results["supervised" if supervised else "plain"] = result
        texts.append(("supervised (restart always, a health check every %s): " % HEALTH_INTERVAL
                      if supervised else "plain: ") + text)
    results["targets"] = results["plain"]["targets"] + results["supervised"]["targets"]
    return results, "\n".join(texts)


def _bench_memory(prefix, supervised):
    rows, points = [], []
    with bl.Workspace("memory") as ws:
        runtime, runner, bundle = _ocirt(ws, "sleep")
        for count in MEMORY_COUNTS:
            run_times = []
            while len(runtime.ids) < count:
                container_id = "%s-%d" % (prefix, len(runtime.ids))
                runtime.ids.append(container_id)
                run_times.append(bl.ms(_run_detached(runtime, runner, bundle, container_id, supervised)))
            if supervised:
                # Measured after a check ran (and the monitor settled after it), not before the first.
                deadline = time.monotonic() + 120
                while not _health_checked(runner, runtime, runtime.ids) and time.monotonic() < deadline:
                    time.sleep(0.2)
            time.sleep(SETTLE_SECONDS)
            pids = [_monitor_pid(runner, runtime, container_id) for container_id in runtime.ids]
            rollups = [smaps_rollup(pid) for pid in pids]
            total = {key: sum(r.get(key, 0) for r in rollups)
                     for key in ("Pss", "Rss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty")}
            point = {"count": count, "pss_kib_per_monitor": total["Pss"] / count,
                     "rss_kib_per_monitor": total["Rss"] / count,
                     "private_kib_per_monitor": (total["Private_Clean"] + total["Private_Dirty"]) / count,
                     "pss_anon_kib_per_monitor": total["Pss_Anon"] / count,
                     "pss_file_kib_per_monitor": total["Pss_File"] / count,
                     "pss_kib_total": total["Pss"], "pss_kib_min": min(r.get("Pss", 0) for r in rollups),
                     "pss_kib_max": max(r.get("Pss", 0) for r in rollups),
                     "run_detach_ms": bl.summary(run_times), "load": bl.load()}
            points.append(point)
            rows.append([count, "%.0f KiB" % point["pss_kib_per_monitor"],
                         "%d-%d KiB" % (point["pss_kib_min"], point["pss_kib_max"]),
                         "%.0f KiB" % point["pss_anon_kib_per_monitor"],
                         "%.0f KiB" % point["pss_file_kib_per_monitor"], "%.0f KiB" % point["private_kib_per_monitor"],
                         "%.0f KiB" % point["rss_kib_per_monitor"], "%.1f MiB" % (total["Pss"] / 1024.0),
                         bl.fmt_ms(point["run_detach_ms"]["median"])])
        delete_times = _delete_all(runtime, runner)
    kind = "supervised " if supervised else ""
    targets = [{"name": "memory: %smonitor PSS KiB per container at %d" % (kind, p["count"]),
                "value": p["pss_kib_per_monitor"], "limit": MONITOR_PSS_LIMIT_KIB,
                "met": p["pss_kib_per_monitor"] <= MONITOR_PSS_LIMIT_KIB} for p in points]
    text = ("What is measured: the PSS of the monitor processes only (sum of Pss in /proc/PID/smaps_rollup of\n"
            "each container's monitor, from `ocirt state` monitorPid, divided by the count); the container\n"
            "processes (sleep) are excluded. Containers started with `ocirt run --detach`, %.1f s settle.\n%s\n"
            "  delete --force of each monitored container: median %s (n=%d)\n%s"
            % (SETTLE_SECONDS,
               bl.table(rows, ["containers", "PSS/monitor", "PSS min-max", "PSS anon", "PSS file", "private (USS)", "RSS/monitor",
                               "PSS total", "run --detach"]),
               bl.fmt_ms(bl.median(delete_times)), len(delete_times), bl.targets_text(targets)))
    return {"measured": "PSS of monitor processes only (sum of /proc/PID/smaps_rollup Pss / count); "
                        "container processes excluded",
            "points": points, "delete_force_ms": bl.summary(delete_times), "targets": targets}, text
