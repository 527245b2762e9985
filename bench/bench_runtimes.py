# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks 1 and 2: `run` of /bin/true, and create / start / wait / delete, ocirt vs runc vs crun."""
import os
import shutil

import benchlib as bl

MAX_POLLS = 1000          # `state` polls while waiting for a /bin/true container to stop
MAX_WAIT_NS = 20 * 10 ** 9


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
        by_name = {r.name: r for r in runtimes}
        jobs = list(by_name) + (["wrapper"] if wrapper_argv else [])
        for round_number in range(-1, rounds):  # round -1 warms the caches and is dropped
            for name in bl.order(jobs, max(round_number, 0)):
                if name == "wrapper":
                    elapsed = runner.time(wrapper_argv)[0]
                else:
                    runtime = by_name[name]
                    container_id = "%s-%s-%d" % (prefix, name, round_number + 1)
                    runtime.ids.append(container_id)
                    elapsed = runner.time(runtime.cmd("run", "--bundle", bundle, container_id))[0]
                if round_number >= 0:
                    samples[name].append(bl.ms(elapsed))
        if "crun" in samples and "wrapper" in samples:
            samples["crun (net of wrapper)"] = [c - w for c, w in zip(samples["crun"], samples["wrapper"])]
    return _report_times("run", "`run` of /bin/true (create+start+wait+delete in one command)",
                         samples, rounds, target_against="crun")


def _report_times(key, title, samples, rounds, target_against):
    stats = {name: bl.summary(values) for name, values in samples.items()}
    ratios = {}
    base = samples.get("ocirt")
    for other in ("runc", "crun", "crun (net of wrapper)"):
        if base and other in samples:
            ratios["ocirt / %s" % other] = bl.paired_ratios(base, samples[other])
    targets = []
    for candidate in ("ocirt / %s (net of wrapper)" % target_against, "ocirt / %s" % target_against):
        if candidate in ratios:
            value = ratios[candidate]["median"]
            targets.append({"name": "%s: %s" % (key, candidate), "value": value, "limit": 1.0,
                            "met": value is not None and value <= 1.0})
            break
    rows = [[name, bl.fmt_ms(s["median"]), bl.fmt_ms(s["p25"]), bl.fmt_ms(s["p75"]), s["n"]]
            for name, s in stats.items()]
    text = "%s, %d paired rounds\n%s\n%s\n%s" % (
        title, rounds, bl.table(rows, ["runtime", "median", "p25", "p75", "n"]),
        bl.table(_ratio_rows(ratios), ["paired ratio", "median [p25-p75]"]), bl.targets_text(targets))
    return {"title": title, "rounds": rounds, "ms": stats, "samples_ms": samples, "ratios": ratios,
            "targets": targets}, text


def _lifecycle_once(runner, runtime, bundle, container_id):
    """create, start, poll state until stopped, delete; (per-step ms, number of state calls)."""
    runtime.ids.append(container_id)
    steps = {}
    steps["create"] = runner.time(runtime.cmd("create", "--bundle", bundle, container_id))[0]
    steps["start"] = runner.time(runtime.cmd("start", container_id))[0]
    waited, polls = 0, 0
    while True:
        elapsed, _code, text = runner.time(runtime.cmd("state", container_id), capture=True)
        waited += elapsed
        polls += 1
        if bl.state_status(text) == "stopped":
            break
        if polls >= MAX_POLLS or waited > MAX_WAIT_NS:
            raise bl.BenchError("%s: container %s not stopped after %d state calls"
                                % (runtime.name, container_id, polls))
    steps["wait (state polls)"] = waited
    steps["delete"] = runner.time(runtime.cmd("delete", container_id))[0]
    steps["total"] = sum(steps.values())
    return {name: bl.ms(value) for name, value in steps.items()}, polls


def bench_lifecycle(rounds, prefix):
    """Four commands per container, as a runc client does them; N paired rounds after a warm-up."""
    with bl.Workspace("lifecycle") as ws:
        bundle, runtimes, runner, wrapper_argv = _setup(ws)
        steps = {r.name: {} for r in runtimes}
        polls = {r.name: [] for r in runtimes}
        wrapper = []
        by_name = {r.name: r for r in runtimes}
        jobs = list(by_name) + (["wrapper"] if wrapper_argv else [])
        for round_number in range(-1, rounds):
            for name in bl.order(jobs, max(round_number, 0)):
                if name == "wrapper":
                    elapsed = bl.ms(runner.time(wrapper_argv)[0])
                    if round_number >= 0:
                        wrapper.append(elapsed)
                    continue
                container_id = "%s-%s-%d" % (prefix, name, round_number + 1)
                times, count = _lifecycle_once(runner, by_name[name], bundle, container_id)
                if round_number >= 0:
                    for step, value in times.items():
                        steps[name].setdefault(step, []).append(value)
                    polls[name].append(count)
    totals = {name: per_step["total"] for name, per_step in steps.items()}
    if "crun" in steps and wrapper:
        # Every crun command went through the wrapper: 3 + the state polls of that round.
        totals["crun (net of wrapper)"] = [
            total - w * (3 + n) for total, w, n in zip(steps["crun"]["total"], wrapper, polls["crun"])]
        totals["wrapper"] = wrapper
    result, text = _report_times("lifecycle", "create + start + wait (poll state) + delete, four+ commands",
                                 totals, rounds, target_against="runc")
    step_names = ["create", "start", "wait (state polls)", "delete", "total"]
    rows = []
    for name, per_step in steps.items():
        rows.append([name] + [bl.fmt_ms(bl.median(per_step[s])) for s in step_names]
                    + ["%g" % bl.median(polls[name])])
    result["steps_ms"] = {name: {s: bl.summary(v) for s, v in per_step.items()} for name, per_step in steps.items()}
    result["state_polls"] = {name: bl.summary(v) for name, v in polls.items()}
    text += "\n  medians by step:\n" + bl.table(rows, ["runtime"] + step_names + ["polls"])
    return result, text
