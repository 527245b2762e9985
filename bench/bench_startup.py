# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 7 (issue 13's start-up check): `ocirt run` of /bin/true, this tree against the tree
before the layer split (commit c2f13ec, flat module_utils), paired in one loop. `--against REV`
pairs it with another commit instead, and `--this REV` replaces this tree by a commit too (to
measure one change: `--this C --against C^`).

The old tree is taken from git (`git archive`) into the benchmark's folder,
compiled with the venv's interpreter, and started by a launcher of the same
shape as `ocirt`'s (`python -IS`, the same sys.path), so the only difference
is the collection's code. Reported: wall and CPU time of each (medians, paired
ratios), and the collection modules each imports for one run
(`python -X importtime`: a package's `__init__` counts as a module).
"""
import os
import subprocess

import benchlib as bl

BEFORE_SPLIT = "c2f13ec"
_CLI = {"flat": "ansible_collections.daemonless.oci.plugins.module_utils.cli",
        "split": "ansible_collections.daemonless.oci.plugins.module_utils._runtime.cli"}


def _site_packages():
    return subprocess.run([bl.VENV_PYTHON, "-c", 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()


def _old_tree(path, revision):
    """The collection at REVISION under PATH/ansible_collections/daemonless/oci, compiled."""
    tree = os.path.join(path, "ansible_collections", "daemonless", "oci")
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", bl.REPO, "archive", revision, "plugins"],
                             check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    subprocess.run([bl.VENV_PYTHON, "-m", "compileall", "-q", os.path.join(tree, "plugins")], check=True)
    return path


def _launcher(path, collections):
    """An `ocirt` of the same shape as tools/install_launcher.py's (as it was at that revision)."""
    layout = "split" if os.path.isdir(os.path.join(collections, "ansible_collections", "daemonless", "oci",
                                                   "plugins", "module_utils", "_runtime")) else "flat"
    module = _CLI[layout]
    with open(os.path.join(collections, *module.split(".")) + ".py") as handle:
        call = "launch(); " if "\ndef launch(" in handle.read() else ""
    with open(path, "w") as handle:
        handle.write("#!%s -IS\nimport sys; sys.path[0:0] = [%r, %r]\nfrom %s import %s\n%s"
                     % (bl.VENV_PYTHON, collections, _site_packages(), module,
                        "launch" if call else "main", "launch()\n" if call else "sys.exit(main())\n"))
    os.chmod(path, 0o755)
    return path


def _imports(runner, launcher, root, bundle, container_id):
    """The collection modules one `run` imports (names, in import order)."""
    runner.time([bl.VENV_PYTHON, "-IS", "-X", "importtime", launcher, "--root", root, "run", "--bundle", bundle,
                 container_id])
    with open(runner.err_path) as handle:
        text = handle.read()
    names = [line.rsplit("|", 1)[1].strip() for line in text.splitlines()
             if line.startswith("import time:") and "|" in line]
    return [name for name in names if name.startswith("ansible_collections.daemonless.oci.plugins.module_utils")]


def bench_startup(rounds, prefix, against=None, this=None):
    against = against or BEFORE_SPLIT
    with bl.Workspace("startup") as ws:
        bundle = bl.busybox_bundle(os.path.join(ws.path, "bundle"), ["/bin/true"])
        old_collections = _old_tree(os.path.join(ws.path, "old"), against)
        launchers = {"old": _launcher(os.path.join(ws.path, "ocirt-old"), old_collections),
                     "new": bl.OCIRT}
        if this:
            launchers["new"] = _launcher(os.path.join(ws.path, "ocirt-new"),
                                         _old_tree(os.path.join(ws.path, "new"), this))
        runtimes = {name: bl.Runtime(name, [launcher], os.path.join(ws.path, "state-" + name))
                    for name, launcher in launchers.items()}
        runner = bl.Runner(ws.path)
        for runtime in runtimes.values():
            ws.on_exit(runtime.cleanup, runner)
        wall = {name: [] for name in runtimes}
        cpu = {name: [] for name in runtimes}
        for round_number in range(-1, rounds):
            for name in bl.order(list(runtimes), max(round_number, 0)):
                runtime = runtimes[name]
                container_id = "%s-%s-%d" % (prefix, name, round_number + 1)
                runtime.ids.append(container_id)
                elapsed = runner.time(runtime.cmd("run", "--bundle", bundle, container_id))[0]
                if round_number >= 0:
                    wall[name].append(bl.ms(elapsed))
                    cpu[name].append(bl.ms(runner.last_cpu_ns))
        imported = {}
        for name, runtime in runtimes.items():
            container_id = "%s-%s-imp" % (prefix, name)
            runtime.ids.append(container_id)
            imported[name] = _imports(runner, launchers[name], runtime.root, bundle, container_id)
    ratios = {"wall": bl.paired_ratios(wall["new"], wall["old"]), "CPU": bl.paired_ratios(cpu["new"], cpu["old"])}
    targets = [{"name": "startup: run, %s / %s, %s" % (this or "this tree", against, measure), "value": stats["median"],
                "limit": 1.0, "met": stats["median"] is not None and stats["median"] <= 1.0, "measure": measure}
               for measure, stats in ratios.items()]
    rows = []
    for name in ("old", "new"):
        w, c = bl.summary(wall[name]), bl.summary(cpu[name])
        rows.append(["%s (%s)" % (name, against if name == "old" else this or "this tree"), bl.fmt_ms(w["median"]),
                     bl.fmt_ms(c["median"]), len(imported[name])])
    text = "`ocirt run` of /bin/true, %s against %s%s, %d paired rounds\n%s\n%s\n%s" % (
        this or "this tree", against, " (before the layer split)" if against == BEFORE_SPLIT else "", rounds,
        bl.table(rows, ["tree", "wall median", "CPU median", "collection modules imported"]),
        bl.table([["new / old, " + m, bl.fmt_ratio(s)] for m, s in ratios.items()], ["paired ratio", "median [p25-p75]"]),
        bl.targets_text(targets))
    return {"against": against, "this": this, "rounds": rounds, "wall_ms": {k: bl.summary(v) for k, v in wall.items()}, "samples_ms": wall,
            "cpu_ms": {k: bl.summary(v) for k, v in cpu.items()}, "cpu_samples_ms": cpu, "ratios": ratios,
            "imports": imported, "targets": targets}, text
