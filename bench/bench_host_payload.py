# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: what the managed host pays to run each module's AnsiballZ payload, above ping's.

    .venv/bin/python bench/bench_host_payload.py [--rounds N] [--collections DIR] [--hide-cache]
                                                 [--importtime] [--json FILE]

A playbook of four tasks (ping; an oci_bundle; an oci_container_state of a
running container from it; an oci_containers of one container with its own
bundle) converges once, then runs again with ANSIBLE_KEEP_REMOTE_FILES=1:
the second run's payloads are the unchanged tasks (nothing to do). Each
payload is then run directly by the host's interpreter, the four in an
order that alternates per round, and the CPU (user + sys) of each process
and its children is taken from wait4. Reported: the median CPU per payload
and the median of the per-round differences to ping's. The modules' cache of
compiled code (/var/cache/ocirt/bytecode) is filled by the converge; with
--hide-cache everything runs in a private mount namespace whose /var/cache
is a world-writable tmpfs, which the modules refuse to use (a before/after
of the cache at the same load: alternate runs with and without). With
--importtime, one more run of each payload under `python -X importtime`
prints the cumulative import times of the collection's modules. Runs as
root; leaves nothing behind (its containers deleted, its folders removed).
--collections measures another tree, as bench_payload.py's.
"""
import argparse
import glob
import json
import os
import resource
import subprocess
import sys

import benchlib as bl

COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]
PYTHON = "/usr/bin/python3"
MODULES = ("ping", "oci_bundle", "oci_container_state", "oci_containers")
HIDDEN = "BENCH_HOST_PAYLOAD_HIDDEN"
PREFIX = "ansible_collections.daemonless.oci.plugins.module_utils."


def _playbook(path, variables):
    tasks = [
        {"name": "ping", "ansible.builtin.ping": {}},
        {"name": "bundle", "daemonless.oci.oci_bundle": {
            "path": variables["bundle"], "rootfs_from": variables["rootfs"], "args": COMMAND,
            "state_root": variables["root"]}},
        {"name": "state", "daemonless.oci.oci_container_state": {
            "id": variables["prefix"] + "-state", "bundle": variables["bundle"], "state": "running",
            "stop_timeout": 2, "state_root": variables["root"]}},
        {"name": "fleet", "daemonless.oci.oci_containers": {"state_root": variables["root"], "containers": [
            {"id": variables["prefix"] + "-fleet", "bundle": variables["fleet_bundle"],
             "rootfs_from": variables["rootfs"], "args": COMMAND, "state": "running", "stop_timeout": 2}]}},
    ]
    with open(path, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], handle)


def _env(ws, collections, keep):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH")
    base = os.path.join(ws.path, "ansible")
    env.update(ANSIBLE_CONFIG=os.path.join(base, "ansible.cfg"), ANSIBLE_HOME=os.path.join(base, "home"),
               ANSIBLE_LOCAL_TEMP=os.path.join(base, "tmp"), ANSIBLE_REMOTE_TEMP=os.path.join(base, "remote"),
               ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_PYTHON_INTERPRETER=PYTHON, ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_KEEP_REMOTE_FILES="1" if keep else "0")
    return env


def _run_playbook(ws, playbook, collections, keep):
    command = [os.path.join(bl.VENV, "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local", playbook]
    done = subprocess.run(command, env=_env(ws, collections, keep), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise bl.BenchError("ansible-playbook failed:\n%s\n%s" % (done.stdout[-3000:], done.stderr[-2000:]))


def _payloads(ws):
    """{module: path of its kept AnsiballZ payload} of the last kept run."""
    found = {}
    for path in glob.glob(os.path.join(ws.path, "ansible", "remote", "ansible-tmp-*", "AnsiballZ_*.py")):
        name = os.path.basename(path)[len("AnsiballZ_"):-len(".py")]
        if name in MODULES:
            found[name] = path
    missing = set(MODULES) - set(found)
    if missing:
        raise bl.BenchError("no kept payload for %s" % ", ".join(sorted(missing)))
    return found


def _measure_one(path):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.run([PYTHON, path], cwd=os.path.dirname(path), stdin=subprocess.DEVNULL,
                             capture_output=True, check=False, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        result = json.loads(process.stdout)
    except ValueError:
        raise bl.BenchError("%s printed no result:\n%s" % (path, (process.stdout + process.stderr)[-2000:]))
    if process.returncode != 0 or result.get("failed") or result.get("changed"):
        raise bl.BenchError("%s: not an unchanged success: %s" % (path, json.dumps(result)[:2000]))
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000


def _importtime(path):
    """{module (ours by short name): (self, cumulative) import ms} of one run under -X importtime."""
    done = subprocess.run([PYTHON, "-X", "importtime", path], cwd=os.path.dirname(path), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, timeout=120)
    found = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = [part.strip() for part in line[len("import time:"):].split("|")]
        if cumulative.isdigit():
            short = name[len(PREFIX):] if name.startswith(PREFIX) else name
            found[short] = (int(_self) / 1000.0, int(cumulative) / 1000.0)
    return found


def measure(rounds, collections):
    results = {"load_before": bl.uptime_text(), "collections": collections,
               "cache": "hidden" if os.environ.get(HIDDEN) else "not hidden"}
    with bl.Workspace("host-payload") as ws:
        for folder in ("tmp", "remote", "home"):
            os.makedirs(os.path.join(ws.path, "ansible", folder))
        with open(os.path.join(ws.path, "ansible", "ansible.cfg"), "w") as handle:
            handle.write("# empty: the settings are environment variables\n")
        source = bl.busybox_bundle(os.path.join(ws.path, "busybox"), COMMAND)
        root = "/run/ocirt-bench-host-%d" % os.getpid()
        runtime = bl.Runtime("ocirt", [bl.OCIRT], root)
        ws.on_exit(bl.remove_tree, root)
        ws.on_exit(runtime.cleanup, bl.Runner(ws.path))
        variables = {"bundle": os.path.join(ws.path, "bundle"), "fleet_bundle": os.path.join(ws.path, "fleet"),
                     "rootfs": os.path.join(source, "rootfs"), "root": root, "prefix": bl.unique_prefix("hp")}
        playbook = os.path.join(ws.path, "play.json")
        _playbook(playbook, variables)
        _run_playbook(ws, playbook, collections, keep=False)
        _run_playbook(ws, playbook, collections, keep=True)
        payloads = _payloads(ws)
        samples = dict((name, []) for name in MODULES)
        for _warmup in range(2):  # warm-up, dropped: page cache, the modules' cache of compiled code
            for name in MODULES:
                _measure_one(payloads[name])
        for round_number in range(rounds):
            for name in bl.order(list(MODULES), round_number):
                samples[name].append(_measure_one(payloads[name]))
        results["cpu_ms"] = dict((name, bl.median(values)) for name, values in samples.items())
        results["above_ping_ms"] = dict(
            (name, bl.median([a - b for a, b in zip(samples[name], samples["ping"])])) for name in MODULES[1:])
        results["samples"] = samples
        results["importtime_ms"] = dict((name, _importtime(payloads[name])) for name in MODULES)
    results["load_after"] = bl.uptime_text()
    return results


def text(results, importtime):
    lines = ["host CPU of unchanged payloads, %s, cache %s; load before: %s; after: %s"
             % (results["collections"], results["cache"], results["load_before"], results["load_after"]),
             "payload               CPU median   above ping's (paired median)"]
    for name in MODULES:
        above = results["above_ping_ms"].get(name)
        shown = "" if above is None else "%+.1f ms" % above
        lines.append("%-20s  %7.1f ms   %s" % (name, results["cpu_ms"][name], shown))
    if importtime:
        ping = results["importtime_ms"]["ping"]
        for name in MODULES[1:]:
            found = results["importtime_ms"][name]
            extra = dict((module, times) for module, times in found.items() if module not in ping)
            lines.append("%s: imports ping's payload does not make: %d, %.1f ms of their own (one run)" % (
                name, len(extra), sum(own for own, _cumulative in extra.values())))
            top = sorted(extra.items(), key=lambda item: -item[1][0])[:14]
            lines.append("  most costly by their own time: " + ", ".join(
                "%s %.1f" % (module, times[0]) for module, times in top))
    return "\n".join(lines)


def _hide_cache():
    """Re-run this script in a private mount namespace where /var/cache is world-writable: refused."""
    if os.environ.get(HIDDEN):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/var/cache"], check=True)
        return
    env = dict(os.environ, **{HIDDEN: "1"})
    os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", "--", sys.executable]
               + sys.argv, env)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--collections", default=os.path.join(bl.VENV, "collections"), metavar="DIR")
    parser.add_argument("--hide-cache", action="store_true", help="run with the modules' bytecode cache refused")
    parser.add_argument("--importtime", action="store_true", help="print our imports' cumulative times")
    parser.add_argument("--json", metavar="FILE", help="write the results there")
    args = parser.parse_args(argv)
    if args.hide_cache:
        _hide_cache()
    results = measure(args.rounds, args.collections)
    print(text(results, args.importtime))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
