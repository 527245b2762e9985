# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks 1 and 2: `run` of /bin/true, and create / start / wait / delete, ocirt vs runc vs crun."""
import os
import shutil

import benchlib as bl

MAX_POLLS = 1000          # `state` polls while waiting for a /bin/true container to stop
MAX_WAIT_NS = 20 * 10 ** 9


# The floor of any command written in Python: the interpreter the ocirt launcher runs, started with the
# launcher's flags, doing nothing. runc and crun pay no such start; a round's ocirt commands pay one each.
FLOOR = "python -IS floor"
FLOOR_ARGV = [bl.VENV_PYTHON, "-IS", "-c", "pass"]


def _setup(ws):
    bundle = bl.busybox_bundle(os.path.join(ws.path, "bundle"), ["/bin/true"])
    state_base = os.path.join(ws.path, "state")
    os.makedirs(state_base)
    runtimes = bl.make_runtimes(state_base)
    runner = bl.Runner(ws.path)
    for runtime in runtimes:
        ws.on_exit(runtime.cleanup, runner)
    wrapped = [r for r in runtimes if r.wrapped]
    wrapper_argv = bl.WRAPPER + [shutil.which("true") or "/bin/true"] if wrapped else None
    return bundle, runtimes, runner, wrapper_argv


def _ratio_rows(ratios):
    return [[name, bl.fmt_ratio(stats)] for name, stats in ratios.items()]


def bench_run(rounds, prefix):
    """`RUNTIME run` of /bin/true, each runtime in turn, N paired rounds (after one warm-up)."""
    with bl.Workspace("run") as ws:
        bundle, runtimes, runner, wrapper_argv = _setup(ws)
        samples = {r.name: [] for r in runtimes}
        if wrapper_argv:
            samples["wrapper"] = []
        samples[FLOOR] = []
        cpu = {name: [] for name in samples}
        by_name = {r.name: r for r in runtimes}
        jobs = list(by_name) + (["wrapper"] if wrapper_argv else []) + [FLOOR]
        for round_number in range(-1, rounds):  # round -1 warms the caches and is dropped
            for name in bl.order(jobs, max(round_number, 0)):
                if name == "wrapper":
                    elapsed = runner.time(wrapper_argv)[0]
                elif name == FLOOR:
                    elapsed = runner.time(FLOOR_ARGV)[0]
                else:
                    runtime = by_name[name]
                    container_id = "%s-%s-%d" % (prefix, name, round_number + 1)
                    runtime.ids.append(container_id)
                    elapsed = runner.time(runtime.cmd("run", "--bundle", bundle, container_id))[0]
                if round_number >= 0:
                    samples[name].append(bl.ms(elapsed))
                    cpu[name].append(bl.ms(runner.last_cpu_ns))
        _net_of_wrapper(samples)
        _net_of_wrapper(cpu)
    return _report_times("run", "`run` of /bin/true (create+start+wait+delete in one command)",
                         samples, cpu, rounds, targets=(("runc", "must"), ("crun", "goal")))


def _net_of_wrapper(samples, calls=None):
    """crun's samples less the wrapper's of the same round (CALLS wrappers per round, default one)."""
    if "crun" in samples and "wrapper" in samples:
        samples["crun (net of wrapper)"] = [c - w * (n if calls else 1) for c, w, n in
                                            zip(samples["crun"], samples["wrapper"], calls or samples["crun"])]


def _report_times(key, title, samples, cpu, rounds, targets):
    """Tables of the wall and CPU medians and of the paired ratios; a target per (runtime, kind) in
    TARGETS, on the wall time as the issue states them, and the same on the CPU time beside it."""
    found = []
    sections = []
    results = {}
    for measure, series in (("wall", samples), ("CPU", cpu)):
        stats = {name: bl.summary(values) for name, values in series.items()}
        ratios = {}
        base = series.get("ocirt")
        for other in ("runc", "crun", "crun (net of wrapper)"):
            if base and other in series:
                ratios["ocirt / %s" % other] = bl.paired_ratios(base, series[other])
        if FLOOR in series and "runc" in series:
            # How close to runc a Python command can come at all: its interpreter starts alone, over runc's whole time.
            ratios["%s / runc" % FLOOR] = bl.paired_ratios(series[FLOOR], series["runc"])
        for against, kind in targets:
            for candidate in ("ocirt / %s (net of wrapper)" % against, "ocirt / %s" % against):
                if candidate in ratios:
                    value = ratios[candidate]["median"]
                    found.append({"name": "%s: %s, %s (%s)" % (key, candidate, measure, kind), "value": value,
                                  "limit": 1.0, "met": value is not None and value <= 1.0, "kind": kind,
                                  "measure": measure})
                    break
        rows = [[name, bl.fmt_ms(s["median"]), bl.fmt_ms(s["p25"]), bl.fmt_ms(s["p75"]), s["n"]]
                for name, s in stats.items()]
        sections.append("%s time\n%s\n%s" % (measure, bl.table(rows, ["runtime", "median", "p25", "p75", "n"]),
                                             bl.table(_ratio_rows(ratios), ["paired ratio", "median [p25-p75]"])))
        results[measure] = (stats, ratios, series)
    text = "%s, %d paired rounds (CPU: user+system of the command and what it reaped)\n%s\n%s" % (
        title, rounds, "\n".join(sections), bl.targets_text(found))
    return {"title": title, "rounds": rounds, "ms": results["wall"][0], "samples_ms": samples,
            "ratios": results["wall"][1], "cpu_ms": results["CPU"][0], "cpu_samples_ms": cpu,
            "cpu_ratios": results["CPU"][1], "targets": found}, text


def _lifecycle_once(runner, runtime, bundle, container_id):
    """create, start, poll state until stopped, delete; (per-step ms, CPU ms of all, number of state calls)."""
    runtime.ids.append(container_id)
    steps = {}
    cpu = 0
    steps["create"] = runner.time(runtime.cmd("create", "--bundle", bundle, container_id))[0]
    cpu += runner.last_cpu_ns
    steps["start"] = runner.time(runtime.cmd("start", container_id))[0]
    cpu += runner.last_cpu_ns
    waited, polls = 0, 0
    while True:
        elapsed, _code, text = runner.time(runtime.cmd("state", container_id), capture=True)
        cpu += runner.last_cpu_ns
        waited += elapsed
        polls += 1
        if bl.state_status(text) == "stopped":
            break
        if polls >= MAX_POLLS or waited > MAX_WAIT_NS:
            raise bl.BenchError("%s: container %s not stopped after %d state calls"
                                % (runtime.name, container_id, polls))
    steps["wait (state polls)"] = waited
    steps["delete"] = runner.time(runtime.cmd("delete", container_id))[0]
    cpu += runner.last_cpu_ns
    steps["total"] = sum(steps.values())
    return {name: bl.ms(value) for name, value in steps.items()}, bl.ms(cpu), polls


def bench_lifecycle(rounds, prefix):
    """Four commands per container, as a runc client does them; N paired rounds after a warm-up."""
    with bl.Workspace("lifecycle") as ws:
        bundle, runtimes, runner, wrapper_argv = _setup(ws)
        steps = {r.name: {} for r in runtimes}
        cpu = {r.name: [] for r in runtimes}
        polls = {r.name: [] for r in runtimes}
        wrapper = []
        floor = []
        by_name = {r.name: r for r in runtimes}
        jobs = list(by_name) + (["wrapper"] if wrapper_argv else []) + [FLOOR]
        for round_number in range(-1, rounds):
            for name in bl.order(jobs, max(round_number, 0)):
                if name == FLOOR:
                    elapsed = bl.ms(runner.time(FLOOR_ARGV)[0])
                    if round_number >= 0:
                        floor.append((elapsed, bl.ms(runner.last_cpu_ns)))
                    continue
                if name == "wrapper":
                    elapsed = bl.ms(runner.time(wrapper_argv)[0])
                    if round_number >= 0:
                        wrapper.append(elapsed)
                        cpu.setdefault("wrapper", []).append(bl.ms(runner.last_cpu_ns))
                    continue
                container_id = "%s-%s-%d" % (prefix, name, round_number + 1)
                times, cpu_ms, count = _lifecycle_once(runner, by_name[name], bundle, container_id)
                if round_number >= 0:
                    for step, value in times.items():
                        steps[name].setdefault(step, []).append(value)
                    cpu[name].append(cpu_ms)
                    polls[name].append(count)
    totals = {name: per_step["total"] for name, per_step in steps.items()}
    if "crun" in steps and wrapper:
        # Every crun command went through the wrapper: 3 + the state polls of that round.
        totals["wrapper"] = wrapper
        crun_calls = [3 + n for n in polls["crun"]]
        _net_of_wrapper(totals, crun_calls)
        _net_of_wrapper(cpu, crun_calls)
    if "ocirt" in steps and floor:
        # One interpreter start per ocirt command of the same round: create, start, delete and its polls.
        calls = [3 + n for n in polls["ocirt"]]
        totals[FLOOR] = [wall * n for (wall, _cpu), n in zip(floor, calls)]
        cpu[FLOOR] = [cpu_ms * n for (_wall, cpu_ms), n in zip(floor, calls)]
    result, text = _report_times("lifecycle", "create + start + wait (poll state) + delete, four+ commands",
                                 totals, cpu, rounds, targets=(("runc", "must"),))
    lower = [r for r in result["ratios"].items() if r[0] == "ocirt / runc"]
    if lower:
        value = lower[0][1]["median"]
        result["targets"].append({"name": "lifecycle: ocirt / runc, wall (goal 0.75)", "value": value,
                                  "limit": 0.75, "met": value is not None and value <= 0.75, "kind": "goal",
                                  "measure": "wall"})
        text += "\n" + bl.targets_text(result["targets"][-1:])
    step_names = ["create", "start", "wait (state polls)", "delete", "total"]
    rows = []
    for name, per_step in steps.items():
        rows.append([name] + [bl.fmt_ms(bl.median(per_step[s])) for s in step_names]
                    + ["%g" % bl.median(polls[name])])
    result["steps_ms"] = {name: {s: bl.summary(v) for s, v in per_step.items()} for name, per_step in steps.items()}
    result["state_polls"] = {name: bl.summary(v) for name, v in polls.items()}
    text += "\n  medians by step:\n" + bl.table(rows, ["runtime"] + step_names + ["polls"])
    return result, text
