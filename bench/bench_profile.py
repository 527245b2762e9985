# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where `ocirt run` of /bin/true spends its time.

1. paired timings of the interpreter alone, `ocirt --version` (start-up and the CLI's
   imports) and `ocirt run`;
2. `python -X importtime` of one `ocirt run`: the slowest imports;
3. `strace -c -f` of one run: the syscalls that take the time;
4. `strace -f -tt -T` of one run: a timeline from execve to exit (milestones below);
5. the same trace of `runc run`, for its first cgroup.procs write.

The raw outputs go to bench/results/profile/ next to latest.json.
"""
import os
import re
import shutil

import benchlib as bl

RESULTS = os.path.join(bl.BENCH, "results", "profile")
_LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):(\d+\.\d+)\s+(.*)$")
_DURATION = re.compile(r"<(\d+\.\d+)>\s*$")


def _paired(runner, runtime, bundle, prefix, rounds):
    jobs = {"python -IS -c pass": lambda n: [bl.VENV_PYTHON, "-IS", "-c", "pass"],
            "ocirt --version": lambda n: [bl.OCIRT, "--version"],
            "ocirt run /bin/true": lambda n: runtime.cmd("run", "--bundle", bundle, "%s-t%d" % (prefix, n))}
    samples = {name: [] for name in jobs}
    for round_number in range(-1, rounds):
        for name in bl.order(list(jobs), max(round_number, 0)):
            elapsed = bl.ms(runner.time(jobs[name](round_number + 1))[0])
            if round_number >= 0:
                samples[name].append(elapsed)
    return samples


def parse_importtime(text):
    """[(self us, cumulative us, depth, module)] from `python -X importtime` output."""
    entries = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        fields = line[len("import time:"):].split("|", 2)
        if len(fields) != 3:
            continue
        self_us, cumulative, name = fields
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        entries.append((int(self_us), int(cumulative), max(depth, 0), name.strip()))
    return entries


def _importtime(runner, runtime, bundle, prefix):
    argv = [bl.VENV_PYTHON, "-IS", "-X", "importtime", bl.OCIRT] + runtime.cmd(
        "run", "--bundle", bundle, prefix + "-imp")[1:]
    runner.time(argv)
    with open(runner.err_path) as handle:
        text = handle.read()
    with open(os.path.join(RESULTS, "importtime.txt"), "w") as handle:
        handle.write(text)
    entries = parse_importtime(text)
    total = sum(e[0] for e in entries)
    ours = sum(e[0] for e in entries if e[3].startswith("ansible_collections"))
    top_level = sorted((e for e in entries if e[2] == 0), key=lambda e: -e[1])[:10]
    by_self = sorted(entries, key=lambda e: -e[0])[:10]
    return {"total_us": total, "collection_self_us": ours, "modules": len(entries),
            "top_cumulative": [{"module": e[3], "cumulative_us": e[1], "self_us": e[0]} for e in top_level],
            "top_self": [{"module": e[3], "self_us": e[0], "cumulative_us": e[1]} for e in by_self]}


def parse_strace_c(text):
    """[(percent, seconds, calls, errors, syscall)] of `strace -c` output, in its order."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.match(r"^\d+\.\d+$", parts[0]) and parts[-1] != "total":
            errors = int(parts[4]) if len(parts) == 6 else 0
            rows.append((float(parts[0]), float(parts[1]), int(parts[3]), errors, parts[-1]))
    return rows


def _strace_count(runner, runtime, bundle, prefix):
    out = os.path.join(RESULTS, "strace-c.txt")
    runner.time(["strace", "-f", "-c", "-o", out] + runtime.cmd("run", "--bundle", bundle, prefix + "-c"))
    with open(out) as handle:
        rows = parse_strace_c(handle.read())
    return [{"syscall": r[4], "percent": r[0], "seconds": r[1], "calls": r[2], "errors": r[3]} for r in rows[:12]]


def _parse_trace(path):
    """[(pid, seconds since midnight, rest of line)] of an `strace -f -tt -T` file."""
    events = []
    with open(path, errors="replace") as handle:
        for line in handle:
            match = _LINE.match(line.rstrip("\n"))
            if match:
                pid, hours, minutes, seconds, rest = match.groups()
                events.append((int(pid), int(hours) * 3600 + int(minutes) * 60 + float(seconds), rest))
    return events


def _duration(events, index):
    """The <duration> of the syscall at INDEX, following it to its '<... resumed>' line if unfinished."""
    pid, _when, rest = events[index]
    match = _DURATION.search(rest)
    if match:
        return float(match.group(1))
    name = rest.split("(", 1)[0]
    for other_pid, _t, other in events[index + 1:]:
        if other_pid == pid and other.startswith("<... %s resumed>" % name):
            found = _DURATION.search(other)
            return float(found.group(1)) if found else None
    return None


def _first_cgroup_procs_write(events):
    """Index of the first write to an fd opened on a cgroup.procs file (same pid), or None."""
    opening, fds = set(), set()
    for index, (pid, _when, rest) in enumerate(events):
        if rest.startswith(("openat(", "openat2(")) and "cgroup.procs" in rest:
            match = re.search(r"\)\s*=\s*(\d+)", rest)
            if match:
                fds.add((pid, int(match.group(1))))
            elif "unfinished" in rest:
                opening.add(pid)
        elif pid in opening and rest.startswith(("<... openat resumed>", "<... openat2 resumed>")):
            opening.discard(pid)
            match = re.search(r"=\s*(\d+)", rest)
            if match:
                fds.add((pid, int(match.group(1))))
        elif rest.startswith("write("):
            match = re.match(r"write\((\d+),", rest)
            if match and (pid, int(match.group(1))) in fds:
                return index
    return None


def timeline(path, state_root, command):
    """Milestones of one traced run: ([(name, seconds from the start)] in time order, extras)."""
    events = _parse_trace(path)
    if not events:
        return [], {}
    main, start = events[0][0], events[0][1]
    marks = {}
    container_pid = None

    def mark(name, when):
        if name not in marks:
            marks[name] = when - start
    write_index = _first_cgroup_procs_write(events)
    write_ms = None
    if write_index is not None:
        mark("first cgroup.procs write starts", events[write_index][1])
        duration = _duration(events, write_index)
        if duration is not None:
            write_ms = duration * 1000.0
            mark("first cgroup.procs write returns", events[write_index][1] + duration)
    for pid, when, rest in events:
        if pid == main and state_root in rest:
            mark("state root first touched (imports done)", when)
        if pid == main and re.match(r"(clone3?|fork|vfork)\(", rest):
            mark("container process forked", when)
        if rest.startswith("pivot_root("):
            mark("pivot_root", when)
        if pid == main and "exec.fifo" in rest and "O_NONBLOCK" in rest:
            mark("start: exec.fifo opened", when)
        if pid != main and rest.startswith('execve("%s"' % command):
            mark("container execve(%s)" % command, when)
            container_pid = pid
        if pid == container_pid and rest.startswith("+++ exited"):
            mark("container process exits", when)
        if pid == main and rest.startswith("rmdir(") and state_root in rest:
            mark("delete: state directory removed", when)
        if pid == main and rest.startswith("exit_group("):
            mark("ocirt calls exit_group", when)
        if pid == main and rest.startswith("+++ exited"):
            mark("ocirt process gone", when)
    return sorted(marks.items(), key=lambda item: item[1]), {"first_cgroup_procs_write_ms": write_ms}


def _runc_cgroup_write(runner, bundle, state_base, prefix):
    """First cgroup.procs write of `runc run` (ms), and the syscalls other processes made meanwhile."""
    runc = shutil.which("runc")
    if runc is None:
        return None
    out = os.path.join(RESULTS, "strace-runc.txt")
    runtime = bl.Runtime("runc", [runc], os.path.join(state_base, "runc"))
    runtime.ids.append(prefix + "-runc")
    try:
        runner.time(["strace", "-f", "-tt", "-T", "-o", out] + runtime.cmd("run", "--bundle", bundle, prefix + "-runc"))
    finally:
        runtime.cleanup(runner)
    events = _parse_trace(out)
    index = _first_cgroup_procs_write(events)
    if index is None:
        return None
    pid, when, _rest = events[index]
    duration = _duration(events, index) or 0.0
    others = sum(1 for p, w, _r in events if p != pid and when < w < when + duration)
    return {"first_cgroup_procs_write_ms": duration * 1000.0, "syscalls_by_others_meanwhile": others}


def bench_profile(quick, prefix):
    if shutil.which("strace") is None:
        raise bl.BenchError("strace not installed: apt-get install strace")
    os.makedirs(RESULTS, exist_ok=True)
    rounds = 8 if quick else 20
    with bl.Workspace("profile") as ws:
        bundle = bl.busybox_bundle(os.path.join(ws.path, "bundle"), ["/bin/true"])
        state_base = os.path.join(ws.path, "state")
        runtime = bl.make_runtimes(state_base, names=("ocirt",))[0]
        runner = bl.Runner(ws.path)
        ws.on_exit(runtime.cleanup, runner)
        samples = _paired(runner, runtime, bundle, prefix, rounds)
        imports = _importtime(runner, runtime, bundle, prefix)
        syscalls = _strace_count(runner, runtime, bundle, prefix)
        trace_path = os.path.join(RESULTS, "strace-f-tt.txt")
        runner.time(["strace", "-f", "-tt", "-T", "-o", trace_path] + runtime.cmd("run", "--bundle", bundle, prefix + "-tt"))
        marks, extra = timeline(trace_path, runtime.root, "/bin/true")
        runc = _runc_cgroup_write(runner, bundle, state_base, prefix)
    stats = {name: bl.summary(values) for name, values in samples.items()}
    run_ms = samples["ocirt run /bin/true"]
    shares = {"interpreter alone / run": bl.paired_ratios(samples["python -IS -c pass"], run_ms),
              "ocirt --version / run": bl.paired_ratios(samples["ocirt --version"], run_ms)}
    lines = ["Profile of `ocirt run` of /bin/true (raw outputs in %s)" % os.path.relpath(RESULTS, bl.REPO),
             bl.table([[name, bl.fmt_ms(s["median"]), bl.fmt_ms(s["p25"]), bl.fmt_ms(s["p75"])]
                       for name, s in stats.items()], ["command (%d paired rounds)" % rounds, "median", "p25", "p75"]),
             "  share of a run: interpreter alone %s, interpreter + CLI imports (--version) %s" % (
                 bl.fmt_ratio(shares["interpreter alone / run"]), bl.fmt_ratio(shares["ocirt --version / run"])),
             "python -X importtime of one run: %.1f ms in %d imports (collection's own modules: %.1f ms self)" % (
                 imports["total_us"] / 1000.0, imports["modules"], imports["collection_self_us"] / 1000.0),
             bl.table([[e["module"], "%.2f ms" % (e["cumulative_us"] / 1000.0), "%.2f ms" % (e["self_us"] / 1000.0)]
                       for e in imports["top_cumulative"]], ["top-level import", "cumulative", "self"]),
             bl.table([[e["module"], "%.2f ms" % (e["self_us"] / 1000.0)] for e in imports["top_self"]],
                      ["slowest modules (self)", "self"]),
             "strace -c -f of one run (all processes; strace slows syscalls down):",
             bl.table([[s["syscall"], "%.1f%%" % s["percent"], "%.2f ms" % (s["seconds"] * 1000.0), s["calls"], s["errors"]]
                       for s in syscalls], ["syscall", "time", "seconds", "calls", "errors"]),
             "strace -f -tt -T timeline of one run (under strace: slower than untraced):"]
    previous = 0.0
    rows = []
    for name, seconds in marks:
        rows.append([name, "%.1f ms" % (seconds * 1000.0), "+%.1f ms" % ((seconds - previous) * 1000.0)])
        previous = seconds
    lines.append(bl.table(rows, ["milestone", "at", "since previous"]))
    if extra.get("first_cgroup_procs_write_ms") is not None:
        lines.append("  first cgroup.procs write: %.2f ms (cgroup v1: up to ~25 ms of kernel RCU wait when it happens)" % extra["first_cgroup_procs_write_ms"])
    if runc:
        lines.append("  runc, same trace: first cgroup.procs write %.2f ms, while its other processes made %d syscalls "
                     "(runc init goes on meanwhile)" % (runc["first_cgroup_procs_write_ms"], runc["syscalls_by_others_meanwhile"]))
    return {"rounds": rounds, "ms": stats, "samples_ms": samples, "shares": shares, "importtime": imports,
            "strace_c_top": syscalls, "timeline_ms": [[name, seconds * 1000.0] for name, seconds in marks],
            "first_cgroup_procs_write_ms": extra.get("first_cgroup_procs_write_ms"), "runc": runc,
            "targets": []}, "\n".join(lines)
