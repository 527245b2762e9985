# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 3: playbooks on localhost, daemonless.oci modules vs containers.podman.podman_container.

For each count (1, 20) and each round, in alternating order: `ansible -m ping`
(the floor any module pays), a playbook looping ansible.builtin.ping COUNT
times (the floor of a looped task), our converge / idempotent re-run / removal
playbooks, and podman's. Ours are three ways: oci_bundle then a loop of
oci_container_state ("ocirt"), one oci_containers task ("fleet"), and, for
one container, the role daemonless.oci.container ("role"). Tasks are timed
by ansible.posix's json callback.
"""
import datetime
import json
import os
import shutil
import subprocess
import sys

import benchlib as bl

PLAYBOOKS = os.path.join(bl.BENCH, "playbooks")
# BENCH_ANSIBLE_COUNTS=1 runs the one-container part alone (the 20-container part takes most of the time).
COUNTS = tuple(int(count) for count in os.environ.get("BENCH_ANSIBLE_COUNTS", "1,20").split(","))
PHASES = ("converge", "idempotent", "removal")
PLAYBOOK_OF = {("ocirt", "converge"): "ocirt_present", ("ocirt", "idempotent"): "ocirt_present",
               ("ocirt", "removal"): "ocirt_absent", ("podman", "converge"): "podman_present",
               ("podman", "idempotent"): "podman_present", ("podman", "removal"): "podman_absent",
               ("fleet", "converge"): "fleet_present", ("fleet", "idempotent"): "fleet_present",
               ("fleet", "removal"): "fleet_absent", ("role", "converge"): "role_present",
               ("role", "idempotent"): "role_present", ("role", "removal"): "role_absent"}
# Our ways of deploying, per count: the role is for one container.
OURS = {1: ("ocirt", "fleet", "role"), 20: ("ocirt", "fleet")}
# The role's task that converges the container (its changed is the one checked).
ROLE_TASKS = {"converge": "Bring the container to the wanted state", "idempotent": "Bring the container to the wanted state",
              "removal": "Remove the container"}
# Issue 20's targets: one container, playbook wall above the ping floor, ours / podman's (paired);
# an unchanged oci_bundle above the module floor (one ping task); 20 containers in one task vs
# podman's loop, playbook wall above the ping floor (paired).
ONE_CONTAINER_TARGET = 0.5
BUNDLE_FLOOR_TARGET_MS = 20.0
FLEET_TARGET = 0.2
# Every item of the loop reports changed (converge, removal) or none does (re-run).
EXPECT_CHANGED = {"converge": True, "idempotent": False, "removal": True}
# A container that stops on SIGTERM at once (sleep as PID 1 would ignore it and wait for the kill).
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]
STOP_TIMEOUT = 2
TARGET = 1.0 / 6.0
PLAYBOOK_TIMEOUT = 900

STORAGE_CONF = """[storage]
driver = "vfs"
graphroot = "{base}/graph"
runroot = "{base}/run"
"""
# Locks as files in tmp_dir: podman's default shared-memory lock segment is shared by every
# podman on the machine, and a fresh runroot's first command frees all its locks.
CONTAINERS_CONF = """[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
runtime = "runc"
tmp_dir = "{base}/tmp"
volume_path = "{base}/volumes"
static_dir = "{base}/graph/libpod"
"""


def _rounds(quick, count):
    if count == 1:
        return 3 if quick else 7
    return 2 if quick else 5


def _check_tools():
    for path in (os.path.join(bl.BENCH_VENV, "bin", "ansible-playbook"), os.path.join(bl.BENCH_VENV, "bin", "ansible")):
        if not os.access(path, os.X_OK):
            raise bl.BenchError("%s missing: run bench/setup.sh (a venv with PyPI's ansible 12.x)" % path)
    podman_collection = os.path.join(bl.BENCH_VENV, "lib", "python%d.%d" % sys.version_info[:2], "site-packages",
                                     "ansible_collections", "containers", "podman")
    if not os.path.isdir(podman_collection):
        raise bl.BenchError("containers.podman not in %s: run bench/setup.sh" % bl.BENCH_VENV)
    podman = shutil.which("podman")
    if podman is None or shutil.which("runc") is None:
        raise bl.BenchError("podman and runc needed: run bench/setup.sh (apt-get install podman runc)")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import _cffi_backend"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
    if probe.returncode != 0:
        raise bl.BenchError("/usr/bin/python3 cannot import _cffi_backend: apt-get install python3-cffi-backend")
    return podman


def _parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def _tasks(output):
    """{task name: (seconds, [changed of each item])} from the json callback's output.

    The items are a loop's results, or oci_containers' per-container results.
    A task that was skipped is left out (the role skips most of its tasks), and so is a meta task.
    """
    data = json.loads(output)
    tasks = {}
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            duration = task["task"]["duration"]
            if "end" not in duration:
                continue  # a meta task (the role's end_role) has no end and no result
            seconds = (_parse_time(duration["end"]) - _parse_time(duration["start"])).total_seconds()
            host = task["hosts"].get("localhost", {})
            if host.get("skipped"):
                continue
            items = host.get("results") or host.get("containers") or [host]
            name = task["task"]["name"].split(" : ")[-1]
            tasks[name] = (seconds, [bool(item.get("changed")) for item in items])
    return tasks


class Ansible:
    """ansible / ansible-playbook of the bench venv, configured entirely under one folder."""

    def __init__(self, ws, podman):
        base = os.path.join(ws.path, "ansible")
        os.makedirs(os.path.join(base, "tmp"))
        self.base = base
        self.podman_base = os.path.join(ws.path, "podman")
        for name in ("graph", "run", "tmp"):
            os.makedirs(os.path.join(self.podman_base, name))
        with open(os.path.join(self.podman_base, "storage.conf"), "w") as handle:
            handle.write(STORAGE_CONF.format(base=self.podman_base))
        with open(os.path.join(self.podman_base, "containers.conf"), "w") as handle:
            handle.write(CONTAINERS_CONF.format(base=self.podman_base))
        self.podman_env = {"CONTAINERS_CONF": os.path.join(self.podman_base, "containers.conf"),
                           "CONTAINERS_STORAGE_CONF": os.path.join(self.podman_base, "storage.conf")}
        self.podman = podman
        self.inventory = os.path.join(base, "inventory")
        with open(self.inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
        with open(os.path.join(base, "ansible.cfg"), "w") as handle:
            handle.write("# empty: the benchmark's settings are environment variables\n")
        self.env = dict(os.environ)
        self.env.update({
            "ANSIBLE_CONFIG": os.path.join(base, "ansible.cfg"),
            "ANSIBLE_HOME": os.path.join(base, "home"),
            "ANSIBLE_LOCAL_TEMP": os.path.join(base, "tmp"),
            "ANSIBLE_REMOTE_TEMP": os.path.join(base, "tmp"),
            # BENCH_COLLECTIONS: another tree's collection (a before/after pair at the same load).
            "ANSIBLE_COLLECTIONS_PATH": os.environ.get("BENCH_COLLECTIONS") or os.path.join(bl.VENV, "collections"),
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
        })
        self.runner = bl.Runner(base)
        self.vars_file = os.path.join(base, "vars.json")

    def podman_cmd(self, *args):
        env = dict(os.environ)
        env.update(self.podman_env)
        return subprocess.run([self.podman] + list(args), env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False, timeout=600)

    def write_vars(self, variables):
        with open(self.vars_file, "w") as handle:
            json.dump(variables, handle)

    def ping(self):
        """Wall ms of `ansible localhost -m ping`."""
        return bl.ms(self.runner.time([os.path.join(bl.BENCH_VENV, "bin", "ansible"), "-i", self.inventory,
                                       "localhost", "-m", "ansible.builtin.ping"], env=self.env)[0])

    def playbook(self, name):
        """(wall ms, tasks) of one playbook run with the json callback."""
        env = dict(self.env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
        elapsed, code, text = self.runner.time(
            [os.path.join(bl.BENCH_VENV, "bin", "ansible-playbook"), "-i", self.inventory, "-e", "@" + self.vars_file,
             os.path.join(PLAYBOOKS, name + ".yml")], check=False, capture=True, env=env, timeout=PLAYBOOK_TIMEOUT)
        if code != 0:
            raise bl.BenchError("ansible-playbook %s failed (exit %d):\n%s\n%s"
                                % (name, code, (text or "")[-3000:], self.runner.error_text()))
        return bl.ms(elapsed), _tasks(text)


def _setup_podman(ansible, rootfs):
    tarball = os.path.join(ansible.podman_base, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True)
    proc = ansible.podman_cmd("import", "--change", 'CMD ["/bin/sh"]', tarball, "localhost/busybox:latest")
    if proc.returncode != 0:
        raise bl.BenchError("podman import failed: %s" % proc.stdout[-2000:])
    os.unlink(tarball)


def _cleanup_podman(ansible):
    ansible.podman_cmd("rm", "--all", "--force", "--time", "0")
    ansible.podman_cmd("rmi", "--all", "--force")
    bl.remove_tree(ansible.podman_base)


def _one_round(ansible, count, round_number, variables, ocirt_runtime):
    """Times (ms) and task durations (s) of every job of one round, in alternating order."""
    out = {"wall": {}, "task": {}, "changed_ok": {}}
    prefix = "%s-r%d" % (variables["bench_prefix"], round_number)
    fleet_ids = ["%s-f%d" % (prefix, i) for i in range(count)]
    ansible.write_vars(dict(
        variables, bench_prefix=prefix,
        bench_fleet_present=[dict(id=i, bundle=variables["bench_fleet_bundle"], rootfs_from=variables["bench_rootfs"],
                                  args=variables["bench_command"], stop_timeout=STOP_TIMEOUT) for i in fleet_ids],
        bench_fleet_absent=[dict(id=i, state="absent", stop_timeout=STOP_TIMEOUT) for i in fleet_ids]))
    ocirt_runtime.ids.extend("%s-%d" % (prefix, i) for i in range(count))
    ocirt_runtime.ids.extend("%s-f%d" % (prefix, i) for i in range(count))
    ocirt_runtime.ids.append("%s-role" % prefix)
    for job in bl.order(("ping", "ping-loop") + OURS[count] + ("podman",), round_number):
        if job == "ping":
            out["wall"]["ping"] = ansible.ping()
            continue
        if job == "ping-loop":
            wall, tasks = ansible.playbook("ping")
            out["wall"]["ping-loop"] = wall
            out["task"]["ping-loop"] = tasks["Ping"][0]
            continue
        for phase in PHASES:
            wall, tasks = ansible.playbook(PLAYBOOK_OF[(job, phase)])
            key = "%s %s" % (job, phase)
            out["wall"][key] = wall
            seconds, changed = tasks[ROLE_TASKS[phase] if job == "role" else "Containers"]
            out["task"][key] = seconds
            if "Bundle" in tasks:
                out["task"]["ocirt bundle " + phase] = tasks["Bundle"][0]
            expected = 1 if job == "role" else count
            out["changed_ok"][key] = len(changed) == expected and all(c == EXPECT_CHANGED[phase] for c in changed)
    return out


def bench_ansible(quick, prefix):
    podman = _check_tools()
    results = {"counts": {}, "targets": []}
    texts = []
    with bl.Workspace("ansible") as ws:
        ansible = Ansible(ws, podman)
        bundle_src = bl.busybox_bundle(os.path.join(ws.path, "busybox"), COMMAND)
        rootfs = os.path.join(bundle_src, "rootfs")
        state_root = os.path.join(ws.path, "ocirt-state")
        ocirt_runtime = bl.Runtime("ocirt", [bl.OCIRT], state_root)
        ws.on_exit(ocirt_runtime.cleanup, bl.Runner(ws.path))
        ws.on_exit(_cleanup_podman, ansible)
        _setup_podman(ansible, rootfs)
        for count in COUNTS:
            variables = {"bench_bundle": os.path.join(ws.path, "bundle-%d" % count), "bench_rootfs": rootfs,
                         "bench_fleet_bundle": os.path.join(ws.path, "fleet-bundle-%d" % count),
                         "bench_role_bundle": os.path.join(ws.path, "role-bundle"),
                         "bench_command": COMMAND, "bench_state_root": state_root, "bench_prefix": "%s-n%d" % (prefix, count),
                         "bench_stop_timeout": STOP_TIMEOUT, "bench_count": count,
                         "bench_image": "localhost/busybox:latest", "bench_podman": podman,
                         "bench_podman_env": ansible.podman_env}
            rounds = _rounds(quick, count)
            # One warm-up round (dropped): the first module runs fill caches.
            samples = [_one_round(ansible, count, r, variables, ocirt_runtime) for r in range(-1, rounds)][1:]
            result, text = _summarize(count, rounds, samples)
            results["counts"][str(count)] = result
            results["targets"].extend(result["targets"])
            texts.append(text)
    return results, "\n".join(texts)


def _summarize(count, rounds, samples):
    wall = {key: [s["wall"][key] for s in samples] for key in samples[0]["wall"]}
    task = {key: [s["task"][key] * 1000.0 for s in samples] for key in samples[0]["task"]}
    changed_ok = {key: all(s["changed_ok"][key] for s in samples) for key in samples[0]["changed_ok"]}
    rows, targets, derived = [], [], {}
    systems = OURS[count]
    for phase in PHASES:
        per_system = {}
        for system in systems + ("podman",):
            key = "%s %s" % (system, phase)
            above_wall = [w - p for w, p in zip(wall[key], wall["ping"])]
            above_task = [(t - p) / count for t, p in zip(task[key], task["ping-loop"])]
            per_system[system] = (above_wall, above_task)
            derived[key] = {"wall_ms": bl.summary(wall[key]), "wall_above_ping_ms": bl.summary(above_wall),
                            "task_ms": bl.summary(task[key]),
                            "task_above_ping_loop_ms_per_container": bl.summary(above_task),
                            "changed_as_expected": changed_ok[key]}
            rows.append([key, bl.fmt_ms(bl.median(wall[key]), 0), bl.fmt_ms(bl.median(above_wall), 0),
                         bl.fmt_ms(bl.median(task[key]), 0), bl.fmt_ms(bl.median(above_task), 0),
                         "yes" if changed_ok[key] else "NO"])
        for system in systems:
            paired = bl.paired_ratios(per_system[system][0], per_system["podman"][0])
            derived["ratio %s %s" % (system, phase)] = {"wall_above_ping": paired}
            if count == 1:
                targets.append({"name": "ansible n=1 %s %s: playbook wall above ping, ours/podman" % (system, phase),
                                "value": paired["median"], "limit": ONE_CONTAINER_TARGET,
                                "met": paired["median"] is not None and paired["median"] <= ONE_CONTAINER_TARGET})
            elif system == "fleet":
                targets.append({"name": "ansible n=%d fleet %s: playbook wall above ping, oci_containers/podman loop"
                                        % (count, phase), "value": paired["median"], "limit": FLEET_TARGET,
                                "met": paired["median"] is not None and paired["median"] <= FLEET_TARGET})
        wall_ratio = bl.paired_ratios(per_system["ocirt"][0], per_system["podman"][0])
        task_ratio = bl.paired_ratios(per_system["ocirt"][1], per_system["podman"][1])
        ours, theirs = bl.median(per_system["ocirt"][1]), bl.median(per_system["podman"][1])
        of_medians = ours / theirs if theirs > 0 else None
        derived["ratio " + phase] = {"wall_above_ping": wall_ratio, "task_above_ping_loop": task_ratio,
                                     "task_above_ping_loop_ratio_of_medians": of_medians}
        targets.append({"name": "ansible n=%d %s: task cost ours/podman" % (count, phase), "value": of_medians,
                        "limit": round(TARGET, 3), "met": of_medians is not None and of_medians <= TARGET})
    ratio_rows = [[phase, _fmt_plain(derived["ratio " + phase]["task_above_ping_loop_ratio_of_medians"]),
                   bl.fmt_ratio(derived["ratio " + phase]["task_above_ping_loop"])]
                  + [bl.fmt_ratio(derived["ratio %s %s" % (system, phase)]["wall_above_ping"]) for system in systems]
                  for phase in PHASES]
    bundle_rows = []
    for phase in ("converge", "idempotent"):
        key = "ocirt bundle " + phase
        if key in task:
            above = [t - p / count for t, p in zip(task[key], task["ping-loop"])]
            derived[key] = {"task_ms": bl.summary(task[key]), "task_above_one_ping_ms": bl.summary(above)}
            bundle_rows.append("oci_bundle task (%s): %s, %s above one ping" % (
                phase, bl.fmt_ms(bl.median(task[key]), 0), bl.fmt_ms(bl.median(above), 1)))
            if phase == "idempotent" and count == 1:
                targets.append({"name": "ansible n=1 unchanged oci_bundle task above one ping task, ms",
                                "value": bl.median(above), "limit": BUNDLE_FLOOR_TARGET_MS,
                                "met": bl.median(above) <= BUNDLE_FLOOR_TARGET_MS})
    floors = ("floor: `ansible -m ping` %s wall; ping loop task %s (%s per item)" % (
        bl.fmt_ms(bl.median(wall["ping"]), 0), bl.fmt_ms(bl.median(task["ping-loop"]), 0),
        bl.fmt_ms(bl.median(task["ping-loop"]) / count, 0)))
    text = ("Ansible, %d container(s), %d paired rounds (converge, idempotent re-run, removal)\n  %s\n%s\n"
            "  %s\n%s\n%s" % (
                count, rounds, floors,
                bl.table(rows, ["playbook", "wall", "wall - ping", "loop task", "task - ping loop, per container",
                                "changed ok"]),
                "; ".join(bundle_rows),
                bl.table(ratio_rows, ["ours / podman", "ocirt task cost: ratio of medians", "paired ratios [p25-p75]"]
                         + ["%s: playbook wall above ping, paired" % system for system in systems]),
                bl.targets_text(targets)))
    return {"rounds": rounds, "floor_ping_ms": bl.summary(wall["ping"]), "ping_loop_task_ms": bl.summary(task["ping-loop"]),
            "phases": derived, "samples": samples, "targets": targets}, text


def _fmt_plain(value):
    return "-" if value is None else "%.3f" % value
