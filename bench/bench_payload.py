# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: what the controller pays to build each module's AnsiballZ payload, and what it ships.

    .venv/bin/python bench/bench_payload.py [--rounds N] [--module NAME ...] [--json FILE] [--collections DIR]
                                            [--warm]

Every task pays one payload build per playbook run (the cache lives in the
run's own temporary directory): ansible's `module_common.modify_module`, whose
finder parses every module_utils file the module reaches, lazy imports
included. Per module and round, a child forked from a process that has loaded
ansible and the collection (as ansible-playbook's workers are) builds the
payload into a fresh cache directory; its CPU time (user + sys) is measured
by the child itself. Reported per module: the number of this collection's
module_utils files in the payload and their bytes, the zip's size, and the
median CPU of a build. `ping` is the floor. The "warm" column is a task's
controller CPU with the collection's persistent payload cache
(plugins/plugin_utils/_payload_cache.py) holding an unchanged build, as on a
playbook's second run: the action plugin's plant (a stat of every file in
the payload, the entry read and checked) plus modify_module loading what was
planted (ping has no such cache: its row is its build). Both columns use the
configured compression (ZIP_DEFLATED, as a task). Needs no root and changes
nothing outside a temporary directory. --collections measures another tree (for a
before/after: `git archive REV | tar -x -C DIR/tree` and a symlink
DIR/coll/ansible_collections/daemonless/oci -> DIR/tree).
"""
import argparse
import base64
import io
import json
import os
import resource
import shutil
import sys
import tempfile
import zipfile

import benchlib as bl

MODULES = ("ansible.builtin.ping", "daemonless.oci.oci_bundle", "daemonless.oci.oci_container_state",
           "daemonless.oci.oci_containers", "daemonless.oci.oci_container_exec", "daemonless.oci.oci_container_info")
OURS = "ansible_collections/daemonless/oci/plugins/module_utils/"
COLLECTIONS = os.path.join(bl.VENV, "collections")


def _setup(collections):
    """Load ansible's plugin machinery as ansible-playbook's main process has it before it forks workers."""
    os.environ["ANSIBLE_COLLECTIONS_PATH"] = collections
    # pylint: disable=import-outside-toplevel
    from ansible.executor import module_common  # noqa: F401  (loaded before the fork, as in a worker)
    from ansible.plugins.loader import init_plugin_loader
    init_plugin_loader([collections])


def _resolve(name):
    from ansible.plugins.loader import module_loader  # pylint: disable=import-outside-toplevel
    context = module_loader.find_plugin_with_context(name)
    if not context.resolved:
        raise bl.BenchError("module %s not found under %s" % (name, os.environ["ANSIBLE_COLLECTIONS_PATH"]))
    return context.plugin_resolved_path


def _build(name, path, cache_dir, store=None):
    """Build NAME's payload into CACHE_DIR as a task does (through the payload cache in STORE, if given);
    return (CPU seconds, zip bytes)."""
    # pylint: disable=import-outside-toplevel
    from ansible import constants as C
    from ansible.executor import module_common
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    C.DEFAULT_LOCAL_TMP = cache_dir
    task_vars = {"ansible_python_interpreter": sys.executable}
    compression = C.config.get_config_value("DEFAULT_MODULE_COMPRESSION")
    before = resource.getrusage(resource.RUSAGE_SELF)
    slot = None
    if store is not None:
        from ansible_collections.daemonless.oci.plugins.plugin_utils import _payload_cache
        os.environ[_payload_cache.ENV_DIR] = store
        slot = _payload_cache.slot_for(path, compression, task_vars)
        if slot is not None:
            slot.plant()
    module_common.modify_module(module_name=name, module_path=path, module_args={},
                                templar=Templar(loader=DataLoader()), task_vars=task_vars,
                                module_compression=compression)
    if slot is not None:
        slot.save()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cached = [os.path.join(top, f) for top, _dirs, files in os.walk(cache_dir) for f in files
              if not f.endswith(".lock")]
    if len(cached) != 1:
        raise bl.BenchError("expected one cached payload under %s, found %s" % (cache_dir, cached))
    return cpu, base64.b64decode(module_common._CachedModule.load(cached[0]).zip_data)  # pylint: disable=protected-access


def _in_child(name, path, store=None):
    """One build in a forked child (a fresh worker each time): {"cpu": s, "zip": base64 of the payload}."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        cache_dir = tempfile.mkdtemp(prefix="bench-payload-")
        try:
            os.close(read_end)
            cpu, data = _build(name, path, cache_dir, store)
            payload = json.dumps({"cpu": cpu, "zip": base64.b64encode(data).decode()}).encode()
        except BaseException as error:  # pylint: disable=broad-except
            payload = json.dumps({"error": "%s: %s" % (type(error).__name__, error)}).encode()
            code = 1
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = json.loads(pipe.read() or b'{"error": "no answer"}')
    os.waitpid(pid, 0)
    if "error" in answer:
        raise bl.BenchError("building %s's payload: %s" % (name, answer["error"]))
    return answer["cpu"], base64.b64decode(answer["zip"])


def contents(data):
    """{path in the zip: size} of this collection's module_utils in payload DATA (bytes of the zip)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return dict((info.filename, info.file_size) for info in archive.infolist()
                    if info.filename.startswith(OURS) and info.filename.endswith(".py"))


def measure(modules=MODULES, rounds=5, collections=COLLECTIONS, warm=False):
    """{module: {"files": [...], "bytes": n, "zip_bytes": n, "cpu_ms": [per round], "cpu_ms_median": m,
    and with WARM "warm_cpu_ms": [...], "warm_cpu_ms_median": m}}."""
    _setup(collections)
    paths = dict((name, _resolve(name)) for name in modules)
    results = dict((name, {"cpu_ms": [], "warm_cpu_ms": []}) for name in modules)
    store = tempfile.mkdtemp(prefix="bench-payload-store-") if warm else None
    try:
        if warm:
            for name in modules:  # the first run of a playbook: builds kept in the store
                _in_child(name, paths[name], store)
        for round_number in range(rounds):
            for name in bl.order(modules, round_number):
                cpu, data = _in_child(name, paths[name])
                results[name]["cpu_ms"].append(round(cpu * 1000.0, 1))
                files = contents(data)
                results[name].update(files=sorted(f[len(OURS):] for f in files), bytes=sum(files.values()),
                                     zip_bytes=len(data))
                if warm:
                    cpu, warm_data = _in_child(name, paths[name], store)
                    if contents(warm_data) != files:
                        raise bl.BenchError("%s: the cached payload's files differ from a build's" % name)
                    results[name]["warm_cpu_ms"].append(round(cpu * 1000.0, 1))
    finally:
        if store:
            shutil.rmtree(store, ignore_errors=True)
    for result in results.values():
        result["cpu_ms_median"] = bl.median(result["cpu_ms"])
        if warm:
            result["warm_cpu_ms_median"] = bl.median(result["warm_cpu_ms"])
        else:
            del result["warm_cpu_ms"]
    return results


def text(results):
    floor = results.get("ansible.builtin.ping", {}).get("cpu_ms_median")
    warm = all("warm_cpu_ms" in r for r in results.values())
    rows = []
    for name, r in results.items():
        row = [name, len(r["files"]), "%.0f KiB" % (r["bytes"] / 1024.0), "%.0f KiB" % (r["zip_bytes"] / 1024.0),
               "%.0f ms" % r["cpu_ms_median"], "%.0f-%.0f ms" % (min(r["cpu_ms"]), max(r["cpu_ms"])),
               "-" if floor is None else "%+.0f ms" % (r["cpu_ms_median"] - floor)]
        if warm:
            row += ["%.0f ms" % r["warm_cpu_ms_median"], "%.0f-%.0f ms" % (min(r["warm_cpu_ms"]), max(r["warm_cpu_ms"])),
                    "-" if floor is None else "%+.0f ms" % (r["warm_cpu_ms_median"] - floor)]
        rows.append(row)
    return bl.table(rows, ["module", "our files", "their source", "zip", "build CPU (median)", "range",
                           "above ping"] + (["warm cache CPU (median)", "range", "above ping's build"] if warm else []))


def bench_payload(quick, _prefix=None):
    """run.py's entry point: (result, text). Measured by a fresh interpreter running this file: ansible's
    collection loader must own `ansible_collections`, and after the benchmarks run.py ran before this one
    in its own process it no longer loaded the collection's metadata ("module ... not found")."""
    import subprocess  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory(prefix="bench-payload-") as scratch:
        output = os.path.join(scratch, "payload.json")
        env = dict((key, value) for key, value in os.environ.items() if key != "PYTHONPATH")
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--rounds", str(3 if quick else 7),
                               "--warm", "--json", output], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=1800, check=False)
        if done.returncode != 0:
            raise bl.BenchError("bench_payload.py failed (%d): %s" % (done.returncode, done.stderr[-2000:]))
        with open(output) as handle:
            results = json.load(handle)["modules"]
    return {"modules": results}, "Controller payload build, per module (%d rounds)\n%s" % (
        len(next(iter(results.values()))["cpu_ms"]), text(results))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--module", nargs="+", default=list(MODULES), metavar="NAME")
    parser.add_argument("--files", action="store_true", help="list each module's files of ours")
    parser.add_argument("--json", metavar="FILE", help="write the results there")
    parser.add_argument("--warm", action="store_true",
                        help="also measure each task's CPU with the payload cache warm (run.py's bench does)")
    parser.add_argument("--collections", default=COLLECTIONS, metavar="DIR",
                        help="the collections path to build from (default %(default)s)")
    args = parser.parse_args(argv)
    load_before = bl.load()
    results = measure(args.module, args.rounds, args.collections, args.warm)
    print("%d rounds; load before %s, after %s" % (args.rounds, load_before, bl.load()))
    print(text(results))
    if args.files:
        for name, result in results.items():
            print("\n%s:\n  %s" % (name, "\n  ".join(result["files"])))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"load_before": load_before, "load_after": bl.load(), "git": bl.git_revision(),
                       "modules": results}, handle, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
