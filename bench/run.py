# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Speed and memory benchmarks of ocirt and the modules, against runc, crun and podman.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--rounds N] [--output FILE]

Prints one table per benchmark (absolute medians, then medians of paired
ratios) and writes everything, raw samples included, to
bench/results/latest.json. See bench/README.md. Run as root.
"""
import argparse
import json
import os
import signal
import sys
import time

import benchlib as bl

BENCHMARKS = ("run", "lifecycle", "ansible", "payload", "scale", "memory", "profile", "startup")
DEFAULT_OUTPUT = os.path.join(bl.BENCH, "results", "latest.json")


def _terminate(signum, _frame):
    # Turn SIGTERM / SIGHUP into an exception so every Workspace cleans up on the way out.
    raise SystemExit(128 + signum)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (8 instead of 30, ...)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help="run only these benchmarks: %s" % ", ".join(BENCHMARKS))
    parser.add_argument("--rounds", type=int, help="paired rounds for run, lifecycle and startup (default 30, quick 8)")
    parser.add_argument("--against", metavar="REV",
                        help="startup: the commit to pair this tree with (default c2f13ec, before the layer split)")
    parser.add_argument("--this", metavar="REV", help="startup: a commit to run instead of this tree")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON results (default %(default)s)")
    return parser.parse_args(argv)


def _run_one(name, args, prefix):
    if name == "run":
        import bench_runtimes  # pylint: disable=import-outside-toplevel
        return bench_runtimes.bench_run(args.rounds or (8 if args.quick else 30), prefix)
    if name == "lifecycle":
        import bench_runtimes  # pylint: disable=import-outside-toplevel
        return bench_runtimes.bench_lifecycle(args.rounds or (8 if args.quick else 30), prefix)
    if name == "ansible":
        import bench_ansible  # pylint: disable=import-outside-toplevel
        return bench_ansible.bench_ansible(args.quick, prefix)
    if name == "payload":
        import bench_payload  # pylint: disable=import-outside-toplevel
        return bench_payload.bench_payload(args.quick, prefix)
    if name == "scale":
        import bench_scale  # pylint: disable=import-outside-toplevel
        return bench_scale.bench_scale(args.quick, prefix)
    if name == "memory":
        import bench_scale  # pylint: disable=import-outside-toplevel
        return bench_scale.bench_memory(args.quick, prefix)
    if name == "startup":
        import bench_startup  # pylint: disable=import-outside-toplevel
        return bench_startup.bench_startup(args.rounds or (8 if args.quick else 30), prefix, args.against, args.this)
    import bench_profile  # pylint: disable=import-outside-toplevel
    return bench_profile.bench_profile(args.quick, prefix)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench/run.py: run as root (it runs containers)", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    selected = [name for name in BENCHMARKS if not args.only or name in args.only]
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": bool(args.quick),
               "git": bl.git_revision(), "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
               "benchmarks": {}}
    print("ocirt benchmarks (%s mode) at %s; %s" % ("quick" if args.quick else "full", results["started"],
                                                    bl.uptime_text()))
    stale = bl.stale_bytecode()
    results["stale_bytecode"] = stale
    if stale:
        print("WARNING: stale or missing .pyc for %s: every ocirt command compiles them again; "
              "run `make bytecode` first" % ", ".join(stale))
    failed = []
    for name in selected:
        before = bl.load()
        print("\n== %s == (load before: %s)" % (name, _load_text(before)))
        start = time.monotonic()
        try:
            result, text = _run_one(name, args, bl.unique_prefix(name[:4]))
        except bl.BenchError as error:
            print("  FAILED: %s" % error)
            failed.append(name)
            results["benchmarks"][name] = {"error": str(error), "load_before": before, "load_after": bl.load()}
            continue
        result["seconds"] = round(time.monotonic() - start, 1)
        result["load_before"] = before
        result["load_after"] = bl.load()
        results["benchmarks"][name] = result
        print(text)
        print("  (%.1f s; load after: %s)" % (result["seconds"], _load_text(result["load_after"])))
    targets = [t for r in results["benchmarks"].values() for t in r.get("targets", [])]
    if targets:
        print("\n== targets ==")
        for target in targets:
            value = target["value"]
            print("  %-52s %-10s limit %-8s %s" % (target["name"], "-" if value is None else "%.3g" % value,
                                                   target["limit"], "met" if target["met"] else "NOT met"))
    results["targets"] = targets
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["uptime_after"] = bl.uptime_text()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, args.output)
    print("\nwrote %s; %s" % (args.output, results["uptime_after"]))
    return 1 if failed else 0


def _load_text(load):
    return "%.2f %.2f %.2f on %d CPUs" % (load["load1"], load["load5"], load["load15"], load["cpus"])


if __name__ == "__main__":
    sys.exit(main())
