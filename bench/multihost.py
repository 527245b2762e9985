"""Converge and idempotent re-run times over SSH for 1..N hosts x C containers each.

Usage (root, after `make venv`; needs Debian's openssh-server and sudo)::

    .venv/bin/python bench/multihost.py [--hosts 1,2,3] [--containers 1,10] [--repeat 1]
                                        [--user root|ocitest] [--pipelining] [--json FILE]

Brings up the largest number of hosts once with tests/multihost/harness.py
(network namespaces on this machine, one sshd each, their own state root and
cgroup namespace), then for every (hosts, containers) pair runs a playbook on
the first `hosts` hosts (--limit) that builds a busybox rootfs and makes
`containers` bundles and running containers on each host, three times:

- converge: from nothing (bundles and containers created and started);
- re-run: the same playbook again (must report changed=0 everywhere);
- remove: every container and bundle absent (timed too, not the subject).

It reports the wall time of each, the wall time per host-container, what an
extra container per host adds, and the CPU each run used on the controller
(ansible-playbook, its workers, ssh) and on the hosts (everything in their
cgroups: sshd, sudo, the modules, the runtime, the containers), against the
machine's cores: the hosts and the controller share them, which is what
bends the curve. Every run is checked:
the hosts must end with exactly the containers asked for, running, in their
own cgroups (read from the machine), and empty after remove. Tears the hosts
down at the end, also on failure.
"""
import argparse
import json
import os
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "multihost"))

import harness  # noqa: E402  (tests/multihost, put on the path above)

PLAYBOOK = """\
---
- name: Bench
  hosts: oci_hosts
  become: true
  gather_facts: false
  vars:
    oci_dir: /srv/oci
    wanted: {state}
  module_defaults:
    group/daemonless.oci.oci:
      state_root: /run/ocirt
  tasks:
    - name: Root filesystem
      ansible.builtin.shell: |
        set -e
        rootfs={{{{ oci_dir }}}}/rootfs
        mkdir -p $rootfs/bin $rootfs/etc $rootfs/tmp $rootfs/proc $rootfs/sys $rootfs/dev
        cp /bin/busybox $rootfs/bin/busybox
        for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox $rootfs/bin/$applet; done
        echo 'root:x:0:0:root:/root:/bin/sh' > $rootfs/etc/passwd
        chmod 1777 $rootfs/tmp
      args:
        creates: "{{{{ oci_dir }}}}/rootfs/bin/busybox"
      when: wanted == 'running'

    - name: Bundles
      daemonless.oci.oci_bundle:
        path: "{{{{ oci_dir }}}}/bundles/c{{{{ item }}}}"
        rootfs_from: "{{{{ oci_dir }}}}/rootfs"
        args: [sleep, "3600"]
        memory: 32M
      loop: "{{{{ range({containers}) | list }}}}"
      when: wanted == 'running'

    - name: Containers
      daemonless.oci.oci_container_state:
        id: c{{{{ item }}}}
        bundle: "{{{{ oci_dir }}}}/bundles/c{{{{ item }}}}"
        state: "{{{{ wanted }}}}"
        stop_timeout: 1
      loop: "{{{{ range({containers}) | list }}}}"

    - name: Bundles gone
      daemonless.oci.oci_bundle:
        path: "{{{{ oci_dir }}}}/bundles/c{{{{ item }}}}"
        state: absent
      loop: "{{{{ range({containers}) | list }}}}"
      when: wanted == 'absent'

    - name: Root filesystem gone
      ansible.builtin.file:
        path: "{{{{ oci_dir }}}}"
        state: absent
      when: wanted == 'absent'
"""


def write_playbook(base, containers, state):
    path = os.path.join(base, "bench-%d-%s.yml" % (containers, state))
    with open(path, "w") as handle:
        handle.write(PLAYBOOK.format(containers=containers, state=state))
    return path


def check(result, hosts, what, changed=None):
    if result.rc != 0:
        raise SystemExit("%s failed:\n%s" % (what, result))
    for host in hosts:
        counts = result.recap.get(host.name)
        if counts is None or counts["failed"] or counts["unreachable"]:
            raise SystemExit("%s: %s did not succeed:\n%s" % (what, host.name, result))
        if changed == 0 and counts["changed"]:
            raise SystemExit("%s: %s changed on a re-run:\n%s" % (what, host.name, result))


def check_hosts(hosts, containers):
    """From the machine: each host has exactly C running containers in its own cgroup."""
    for host in hosts:
        names = sorted(os.path.basename(p) for p in host.container_cgroups() if "/pids/" in p)
        expected = sorted("c%d" % i for i in range(containers))
        if names != expected:
            raise SystemExit("%s: container cgroups %s, expected %s" % (host.name, names, expected))
        pids = host.container_pids()
        if len(pids) != containers:
            raise SystemExit("%s: %d container processes, expected %d" % (host.name, len(pids), containers))


def check_empty(hosts):
    for host in hosts:
        if host.container_cgroups() or host.container_pids() or host.state_entries():
            raise SystemExit("%s: not clean after remove: %s %s %s"
                             % (host.name, host.container_cgroups(), host.container_pids(), host.state_entries()))


def host_cpu_seconds(hosts):
    """CPU time used so far by everything in the hosts' cgroups (sshd, modules, runtime, containers)."""
    total = 0.0
    for host in hosts:
        v1 = os.path.join(harness.CGROUP_MOUNT, "cpuacct", host.cgroup, "cpuacct.usage")
        if os.path.exists(v1):
            with open(v1) as handle:
                total += int(handle.read()) / 1e9
            continue
        for mountpoint, fstype, dummy, dummy2 in harness.cgroup_mounts():
            stat = os.path.join(mountpoint, host.cgroup, "cpu.stat")
            if fstype == "cgroup2" and os.path.exists(stat):
                with open(stat) as handle:
                    fields = dict(line.split() for line in handle)
                total += int(fields.get("usage_usec", 0)) / 1e6
                break
    return total


def controller_cpu_seconds():
    """CPU time of finished children: ansible-playbook, its workers and ssh clients."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(machine, hosts, book, inventory, kwargs):
    controller, managed = controller_cpu_seconds(), host_cpu_seconds(hosts)
    result = machine.playbook(book, inventory, **kwargs)
    return result, controller_cpu_seconds() - controller, host_cpu_seconds(hosts) - managed


def measure(machine, inventory, count, containers, args):
    hosts = machine.hosts[:count]
    limit = ",".join(h.name for h in hosts)
    kwargs = {"limit": limit, "pipelining": args.pipelining, "forks": max(count, 5)}
    up_book = write_playbook(machine.base, containers, "running")
    down_book = write_playbook(machine.base, containers, "absent")
    converge, converge_ctl, converge_hosts = timed(machine, hosts, up_book, inventory, kwargs)
    check(converge, hosts, "converge")
    check_hosts(hosts, containers)
    rerun, rerun_ctl, rerun_hosts = timed(machine, hosts, up_book, inventory, kwargs)
    check(rerun, hosts, "re-run", changed=0)
    check_hosts(hosts, containers)
    remove = machine.playbook(down_book, inventory, **kwargs)
    check(remove, hosts, "remove")
    check_empty(hosts)
    return {"hosts": count, "containers": containers, "converge": converge.seconds, "rerun": rerun.seconds,
            "remove": remove.seconds, "converge_cpu_controller": converge_ctl, "converge_cpu_hosts": converge_hosts,
            "rerun_cpu_controller": rerun_ctl, "rerun_cpu_hosts": rerun_hosts, "load": os.getloadavg()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,2,3", help="host counts, comma-separated (default 1,2,3)")
    parser.add_argument("--containers", default="1,10", help="containers per host (default 1,10)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per pair; the fastest (converge + re-run) is kept")
    parser.add_argument("--user", default="root", choices=["root", harness.TEST_USER],
                        help="login user; %s becomes root through sudo" % harness.TEST_USER)
    parser.add_argument("--pipelining", action="store_true", help="Ansible SSH pipelining on")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    counts = sorted(int(n) for n in args.hosts.split(","))
    sizes = sorted(int(n) for n in args.containers.split(","))
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    if not 1 <= args.repeat <= 10:
        raise SystemExit("--repeat: 1 to 10")
    started = time.monotonic()
    machine = harness.Harness(max(counts)).up()
    rows = []
    try:
        extra = {"ansible_become_method": "sudo"} if args.user != "root" else {}
        inventory = machine.inventory(args.user, extra)
        # A warm-up run, so the first measured one does not pay for cold caches.
        measure(machine, inventory, 1, 1, args)
        for count in counts:
            for containers in sizes:
                runs = [measure(machine, inventory, count, containers, args) for dummy in range(args.repeat)]
                best = min(runs, key=lambda r: r["converge"] + r["rerun"])
                rows.append(best)
                print("%d host(s) x %2d: converge %6.2fs  re-run %6.2fs  remove %6.2fs  (load %.1f)"
                      % (count, containers, best["converge"], best["rerun"], best["remove"], best["load"]), flush=True)
    finally:
        errors = machine.teardown()
        leftovers = machine.leftovers()
        if errors or leftovers:
            print("teardown problems: %s %s" % (errors, leftovers), file=sys.stderr)
    report(rows, args)
    print("\n(total %.0fs, user %s, pipelining %s)" % (time.monotonic() - started, args.user, args.pipelining))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


def report(rows, args):
    """Wall times, the cost per host-container, and where the CPU went (controller, hosts).

    Everything, the controller included, runs on this machine's cores: the wall
    time stays flat in the host count while the CPU the run needs, spread over
    the hosts that run at once, is below the number of cores.
    """
    del args
    cores = os.cpu_count() or 1
    print("\nhosts ctrs | converge  per h-c  cpu ctl+hosts  busy | re-run  per h-c  cpu ctl+hosts  busy | remove")
    for row in rows:
        count, containers = row["hosts"], row["containers"]
        cells = []
        for phase in ("converge", "rerun"):
            cpu = row[phase + "_cpu_controller"] + row[phase + "_cpu_hosts"]
            cells.append("%7.2fs %7.3fs %6.1fs+%5.1fs %4.0f%%" % (
                row[phase], row[phase] / (count * containers), row[phase + "_cpu_controller"],
                row[phase + "_cpu_hosts"], 100.0 * cpu / row[phase] / cores))
        print("%5d %4d | %s | %s | %6.2fs" % (count, containers, cells[0], cells[1], row["remove"]))
    print("(per h-c: wall time per host-container; busy: CPU used / (wall x %d cores))" % cores)
    by_key = dict(((r["hosts"], r["containers"]), r) for r in rows)
    for count in sorted(set(r["hosts"] for r in rows)):
        small, big = by_key.get((count, min(r["containers"] for r in rows))), by_key.get((count, max(r["containers"] for r in rows)))
        if small is not None and big is not None and big["containers"] > small["containers"]:
            extra = big["containers"] - small["containers"]
            print("%d host(s): each extra container per host adds %.2fs to converge, %.2fs to a re-run"
                  % (count, (big["converge"] - small["converge"]) / extra, (big["rerun"] - small["rerun"]) / extra))


if __name__ == "__main__":
    sys.exit(main())
