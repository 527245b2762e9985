# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Networks (issue 16): what a bridge network adds to a container's life, ours beside podman's.

Per round, each runner in turn (alternating order), a container of busybox
running /bin/true from creation to removal:

- ocirt: oci_container_state's backend in this process, running (wait:
  exited) then absent, with `network: none` and with `network: [bench]` (a
  bridge with portmap and firewall, no dns; podman's default
  network has none, and adds tuning); the difference is the set-up and teardown of the
  network (namespace with lo up, CNI ADD of the network, the files; DEL, unmount).
- podman: `podman run --rm --network none` and `--network podman` (its CNI
  backend and /etc/cni/net.d/87-podman-bridge.conflist here) of the same rootfs.

Target: our added cost no more than podman's. Timing is reported, never asserted.
Run as root: `.venv/bin/python bench/bench_network.py [--rounds N]` (podman from bench/setup.sh).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(REPO, ".venv", "collections")]

import benchlib as bl  # noqa: E402

CNI_BIN = "/usr/lib/cni"


def podman_env(base):
    """podman confined to BASE (never /etc/containers), as /work/shared/notes/peers-on-this-machine.md says."""
    os.makedirs(os.path.join(base, "tmp"))
    storage = os.path.join(base, "storage.conf")
    with open(storage, "w") as handle:
        handle.write('[storage]\ndriver = "vfs"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n' % (base, base))
    conf = os.path.join(base, "containers.conf")
    with open(conf, "w") as handle:
        handle.write('[containers]\nnetns = "none"\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                     '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "%s/tmp"\n'
                     '[network]\nnetwork_backend = "cni"\n' % base)
    return dict(os.environ, CONTAINERS_STORAGE_CONF=storage, CONTAINERS_CONF=conf)


def timed(function):
    started = time.monotonic_ns()
    function()
    return bl.ms(time.monotonic_ns() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state, networks
    with bl.Workspace("network") as ws:
        bundle = bl.busybox_bundle(os.path.join(ws.path, "bundle"), ["/bin/true"])
        root = os.path.join(ws.path, "state")
        config_dir = os.path.join(ws.path, "cni")
        net = dict(name="bench%d" % os.getpid(), state="present", driver="bridge", subnet="10.231.0.0/16",
                   gateway=None, ip_range=None, interface_name=None, parent=None, ip_masquerade=True,
                   internal=False, isolate=False, dns=False, force=True, config_dir=config_dir, cni_path=CNI_BIN,
                   state_root=root)
        networks.run_network(net)
        ws.on_exit(networks.run_network, dict(net, state="absent"))
        podman = shutil.which("podman")
        env = None
        if podman:
            env = podman_env(os.path.join(ws.path, "podman"))
            tar = os.path.join(ws.path, "rootfs.tar")
            subprocess.run(["tar", "-C", os.path.join(bundle, "rootfs"), "-cf", tar, "."], check=True)
            subprocess.run([podman, "import", tar, "localhost/bench-busybox:latest"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        counter = [0]

        def ocirt(network):
            counter[0] += 1
            params = dict(id="bn-%d-%d" % (os.getpid(), counter[0]), bundle=bundle, state="running", recreate=False,
                          restart=False, wait="exited", timeout=60, stop_signal="SIGKILL", stop_timeout=0,
                          log_path=None, log_max_size=0, log_max_files=1, logs_lines=0, state_root=root,
                          network=network, network_config_dir=config_dir, cni_path=CNI_BIN)
            return lambda: (container_state.run(params), container_state.run(dict(params, state="absent")))

        def podman_run(network):
            return lambda: subprocess.run([podman, "run", "--rm", "--network", network, "localhost/bench-busybox",
                                           "/bin/true"], env=env, check=True, stdout=subprocess.DEVNULL)

        runners = {"ocirt none": lambda: ocirt(["none"]), "ocirt bridge": lambda: ocirt([net["name"]])}
        if podman:
            runners.update({"podman none": lambda: podman_run("none"), "podman bridge": lambda: podman_run("podman")})
        samples = dict((name, []) for name in runners)
        for round_number in range(-1, args.rounds):
            for name in bl.order(list(runners), max(round_number, 0)):
                elapsed = timed(runners[name]())
                if round_number >= 0:
                    samples[name].append(elapsed)
        if podman:
            subprocess.run([podman, "rm", "-a", "-f"], env=env, check=False, stdout=subprocess.DEVNULL)
            ws.on_exit(shutil.rmtree, os.path.join(ws.path, "podman"), True)
    stats = dict((name, bl.summary(values)) for name, values in samples.items())
    rows = [[name, bl.fmt_ms(s["median"]), "%s - %s" % (bl.fmt_ms(s["p25"]), bl.fmt_ms(s["p75"]))]
            for name, s in stats.items()]
    print(bl.table(rows, ["runner (create to removal)", "median", "quartiles"]))
    added = {"ocirt": [b - n for b, n in zip(samples["ocirt bridge"], samples["ocirt none"])]}
    if podman:
        added["podman"] = [b - n for b, n in zip(samples["podman bridge"], samples["podman none"])]
    report = {"rounds": args.rounds, "load": bl.load(), "samples": samples,
              "added_median_ms": dict((k, bl.median(v)) for k, v in added.items())}
    for name, values in added.items():
        print("added by the network, %s: %s per container (median of paired differences)"
              % (name, bl.fmt_ms(bl.median(values))))
    if podman:
        ratio = bl.median(added["ocirt"]) / bl.median(added["podman"])
        report["ratio_to_podman"] = ratio
        print("ratio of the added costs, ocirt / podman: %.2f (target: <= 1) -> %s"
              % (ratio, "met" if ratio <= 1 else "NOT met"))
    print(json.dumps(report["added_median_ms"]))


if __name__ == "__main__":
    main()
