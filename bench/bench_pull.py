# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling images: oci_image's pull vs `skopeo copy` and `podman pull`, from one local registry.

    .venv/bin/python bench/bench_pull.py [--rounds N] [--layers N] [--layer-mb N] [--image debian]
                                         [--output FILE]

Starts Debian's docker-registry on 127.0.0.1 (TLS from a throwaway CA,
htpasswd auth; the tests' tests/registry_support.py does it), pushes a
busybox image with N extra layers of incompressible data (or, with --image
debian, a Debian bookworm root of real files in three layers: the tests'
debootstrap tree of tests/nspawn_support.py, made once), then in each round,
in a rotating order:

- cold pull: an empty store / layout / podman graph root each time; oci_image
  unpacks each layer as it lands (as podman does), and is timed once more
  without unpacking (as skopeo, and oci_image on a host without overlayfs);
- warm pull: the image already there (oci_image pull=missing, which asks no
  registry; skopeo copy to the same layout; podman pull, which always asks);
- first start: a bundle from the pulled image and `ocirt run` of /bin/true,
  vs `podman run --rm` of the same.

oci_image runs as a subprocess calling its backend (pull.ensure_present), as
a module would, beside a subprocess that only imports it: the "module floor";
skopeo's counterpart is `skopeo --version` ("skopeo start"), and each pull's
time above its own start is printed too. Podman runs from a private scratch
configuration (bench/setup.sh and /work/shared/notes). Run as root. Prints a
table of wall times and of CPU times (user + system of the timed processes
and their children; the registry's own CPU is in neither, and is printed
apart: the registry shares the machine's CPUs with the pull), the paired
ratios of the targets, and writes JSON. Every sample starts after a sync
(the writes of the samples before it on disk), and every step removes what
it stored before the next step (a pull that followed another's stored image
cost twice the CPU here).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys

import benchlib as bl

TESTS = os.path.join(bl.REPO, "tests")
COLLECTIONS = os.path.join(bl.REPO, ".venv", "collections")
PY = os.path.join(bl.REPO, ".venv", "bin", "python")
OCIRT = os.path.join(bl.REPO, ".venv", "bin", "ocirt")

# Both import what the oci_image module imports before it does anything (AnsibleModule, the pull,
# the layer unpacker): the floor is a module run that does nothing.
MODULE_IMPORTS = ("import sys; from ansible.module_utils.basic import AnsibleModule; "
                  "from ansible_collections.daemonless.oci.plugins.module_utils._image import pull; "
                  "from ansible_collections.daemonless.oci.plugins.module_utils._bundle import image_rootfs; ")
PULL = (MODULE_IMPORTS + "pull.ensure_present(sys.argv[1], sys.argv[2], pull=sys.argv[3], username=sys.argv[4], "
        "password=sys.argv[5], ca_path=sys.argv[6], unpack=image_rootfs.pull_unpacker())")
# The same pull without unpacking (what a host without overlayfs does, and what skopeo does).
PULL_BLOBS = PULL.replace(", unpack=image_rootfs.pull_unpacker()", "")
FLOOR = MODULE_IMPORTS.rstrip("; ")
BUNDLE = ("import sys; from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle; "
          "bundle.ensure(sys.argv[1], {'args': ['/bin/true']}, image=sys.argv[2], image_root=sys.argv[3])")


CPU = {}  # what -> CPU ns of each sample, beside the wall-time samples
REGISTRY_CPU = {}  # what -> the registry's CPU ns while each sample ran
REGISTRY_PID = [None]


def _registry_cpu_ns():
    """The registry process's CPU so far (user + system), or 0 when it is not known."""
    if REGISTRY_PID[0] is None:
        return 0
    with open("/proc/%d/stat" % REGISTRY_PID[0]) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000000000 // os.sysconf("SC_CLK_TCK")


def _children_cpu_ns():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def settle():
    """Untimed: the earlier samples' writes reach the disk first. Without it a sample paid for the
    write-back of what ran before it: after the Debian image's unpack (some 300 MB of files), the
    first start took 270 ms instead of 70."""
    os.sync()


def timed(argv, env=None, cpu_into=None, settled=False):
    """Wall ns of ARGV (settled first unless SETTLED); its CPU ns (user + system, children included)
    added to CPU_INTO[0] when given."""
    if not settled:
        settle()
    cpu = _children_cpu_ns()
    start = bl.ns()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, check=False)
    elapsed = bl.ns() - start
    if cpu_into is not None:
        cpu_into[0] += _children_cpu_ns() - cpu
    if result.returncode != 0:
        raise bl.BenchError("%s failed (%d): %s" % (" ".join(argv[:3]), result.returncode, result.stderr[-2000:]))
    return elapsed


def sample(samples, what, argv, env=None):
    """Time ARGV into SAMPLES[WHAT] (wall), CPU[WHAT] and REGISTRY_CPU[WHAT]."""
    cpu = [0]
    registry_before = _registry_cpu_ns()
    samples[what].append(timed(argv, env, cpu))
    CPU.setdefault(what, []).append(cpu[0])
    REGISTRY_CPU.setdefault(what, []).append(_registry_cpu_ns() - registry_before)


def podman_env(base):
    os.makedirs(os.path.join(base, "tmp"), exist_ok=True)
    storage = os.path.join(base, "storage.conf")
    with open(storage, "w") as handle:
        handle.write('[storage]\ndriver = "overlay"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n' % (base, base))
    conf = os.path.join(base, "containers.conf")
    with open(conf, "w") as handle:
        handle.write('[containers]\nnetns = "none"\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                     '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "%s/tmp"\n' % base)
    registries = os.path.join(base, "registries.conf")
    with open(registries, "w") as handle:
        handle.write("unqualified-search-registries = []\n")
    return dict(os.environ, CONTAINERS_STORAGE_CONF=storage, CONTAINERS_CONF=conf,
                CONTAINERS_REGISTRIES_CONF=registries)


def _layered_image(work, steps):
    """An OCI image layout (tag "big") with a layer per step: each STEP(rootfs) changes the root,
    then umoci repacks it. (registry_support, the layout's path)."""
    sys.path.insert(0, TESTS)
    import registry_support as rs  # pylint: disable=import-outside-toplevel,import-error
    layout = os.path.join(work, "layout")
    rs.run("umoci", "init", "--layout", layout)
    rs.run("umoci", "new", "--image", layout + ":big")
    bundle = os.path.join(work, "unpacked")
    rs.run("umoci", "unpack", "--image", layout + ":big", bundle)
    for step in steps:
        step(os.path.join(bundle, "rootfs"))
        # --refresh-bundle: without it every repack diffs against the first unpack and replaces the
        # tag's single layer, and the "multi-layer" image had one layer holding everything.
        rs.run("umoci", "repack", "--refresh-bundle", "--image", layout + ":big", bundle)
    rs.run("umoci", "config", "--image", layout + ":big", "--config.cmd", "/bin/true")
    return rs, layout


def build_image(work, layers, layer_mb):
    """busybox, then LAYERS layers of LAYER_MB MiB of random data each."""
    sys.path.insert(0, os.path.join(bl.REPO, "tools"))
    import busybox_bundle  # pylint: disable=import-outside-toplevel,import-error
    src = busybox_bundle.build_rootfs(os.path.join(work, "src"))

    def data(index):
        def write(rootfs):
            with open(os.path.join(rootfs, "data%d" % index), "wb") as handle:
                handle.write(os.urandom(layer_mb << 20))
        return write
    return _layered_image(work, [lambda rootfs: subprocess.check_call(["cp", "-a", src + "/.", rootfs])]
                          + [data(index) for index in range(layers)])


# The Debian image's layers, as a Dockerfile would build them: the base, then /usr/share, then
# Python and systemd.
DEBIAN_LATER_LAYERS = (("usr/share",), ("usr/lib/python3", "usr/lib/python3.11", "usr/lib/systemd"))


def build_debian_image(work):
    """The tests' Debian bookworm tree (debootstrap, cached) as an image of three layers."""
    sys.path.insert(0, TESTS)
    import nspawn_support  # pylint: disable=import-outside-toplevel,import-error
    try:
        tree = nspawn_support._nspawn_root()  # pylint: disable=protected-access
    except BaseException as exc:  # pytest's skip: no debootstrap, no network
        raise bl.BenchError("no Debian tree for --image debian: %s" % exc)

    def base(rootfs):
        subprocess.check_call(["cp", "-a", tree + "/.", rootfs])
        for paths in DEBIAN_LATER_LAYERS:
            for path in paths:
                shutil.rmtree(os.path.join(rootfs, path), ignore_errors=True)

    def adding(paths):
        def add(rootfs):
            for path in paths:
                if os.path.exists(os.path.join(tree, path)):
                    subprocess.check_call(["cp", "-a", os.path.join(tree, path), os.path.join(rootfs, path)])
        return add
    return _layered_image(work, [base] + [adding(paths) for paths in DEBIAN_LATER_LAYERS])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=4, help="data layers on top of busybox (default 4)")
    parser.add_argument("--layer-mb", type=int, default=8, help="MiB of random data per layer (default 8)")
    parser.add_argument("--image", choices=("synthetic", "debian"), default="synthetic",
                        help="busybox and random data (default), or a Debian root of real files in three layers")
    parser.add_argument("--output", default=os.path.join(bl.BENCH, "results", "pull.json"))
    args = parser.parse_args(argv)
    samples = dict((key, []) for key in ("ocirt cold", "ocirt cold, blobs only", "ocirt warm", "module floor", "skopeo cold", "skopeo warm",
                                         "skopeo start",
                                         "podman cold", "podman warm", "ocirt first start", "podman first run"))
    with bl.Workspace("pull") as ws:
        if args.image == "debian":
            rs, layout = build_debian_image(ws.path)
        else:
            rs, layout = build_image(ws.path, args.layers, args.layer_mb)
        pki = rs.Pki(os.path.join(ws.path, "pki"))
        registry = rs.Registry(os.path.join(ws.path, "registry"), pki)
        ws.on_exit(registry.stop)
        REGISTRY_PID[0] = registry.proc.pid
        name = registry.host + "/bench/big:1"
        rs.push(pki, layout, "big", name)
        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        penv = podman_env(os.path.join(ws.path, "podman"))

        def podman_clean():
            subprocess.run(["podman", "rmi", "-a", "-f"], env=penv, check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        ws.on_exit(podman_clean)
        creds = "%s:%s" % (rs.USER, rs.PASSWORD)
        state_root = os.path.join("/run", "ocirt-bench-pull-%d" % os.getpid())
        ws.on_exit(shutil.rmtree, state_root, True)
        for round_number in range(args.rounds):
            store = os.path.join(ws.path, "store%d" % round_number)
            oci = os.path.join(ws.path, "oci%d" % round_number)

            def ocirt_cold():
                sample(samples, "ocirt cold", [PY, "-c", PULL, store, name, "missing", rs.USER, rs.PASSWORD, pki.ca],
                       env)
                sample(samples, "ocirt warm", [PY, "-c", PULL, store, name, "missing", rs.USER, rs.PASSWORD, pki.ca],
                       env)
                sample(samples, "module floor", [PY, "-c", FLOOR], env)
                bundle = os.path.join(ws.path, "bundle%d" % round_number)
                cpu = [0]
                settle()
                start = bl.ns()
                timed([PY, "-c", BUNDLE, bundle, name, store], env, cpu, settled=True)
                timed([OCIRT, "--root", state_root, "run", "--bundle", bundle, "first%d" % round_number], None, cpu,
                      settled=True)
                samples["ocirt first start"].append(bl.ns() - start)
                CPU.setdefault("ocirt first start", []).append(cpu[0])
                subprocess.run([OCIRT, "--root", state_root, "delete", "--force", "first%d" % round_number],
                               check=True)
                shutil.rmtree(bundle)
                shutil.rmtree(store)

            def ocirt_blobs():
                blobs_only = store + "-blobs"
                sample(samples, "ocirt cold, blobs only", [PY, "-c", PULL_BLOBS, blobs_only, name, "missing",
                                                           rs.USER, rs.PASSWORD, pki.ca], env)
                shutil.rmtree(blobs_only)

            def skopeo():
                argv = ["skopeo", "copy", "--quiet", "--src-cert-dir", pki.cert_dir, "--src-creds", creds,
                        "docker://" + name, "oci:%s:big" % oci]
                sample(samples, "skopeo cold", argv)
                sample(samples, "skopeo warm", argv)
                # skopeo's module floor: the binary starting and doing nothing.
                sample(samples, "skopeo start", ["skopeo", "--version"])
                shutil.rmtree(oci)

            def podman():
                podman_clean()
                argv = ["podman", "pull", "-q", "--cert-dir", pki.cert_dir, "--creds", creds, name]
                sample(samples, "podman cold", argv, penv)
                sample(samples, "podman warm", argv, penv)
                sample(samples, "podman first run", ["podman", "run", "--rm", name, "/bin/true"], penv)
                podman_clean()

            # Each step removes what it stored before the next: on this VM a pull that followed another's
            # stored image (some 440 MB of the Debian image, unpacked) cost about twice the CPU, and the blobs-only
            # pull always followed ocirt's cold pull.
            for step in bl.order([ocirt_cold, ocirt_blobs, skopeo, podman], round_number):
                step()
    stats = dict((key, bl.summary([bl.ms(v) for v in values])) for key, values in samples.items())
    cpu_stats = dict((key, bl.summary([bl.ms(v) for v in values])) for key, values in CPU.items())
    rows = [[key, bl.fmt_ms(value["median"]), bl.fmt_ms(value["p25"]), bl.fmt_ms(value["p75"]),
             bl.fmt_ms(cpu_stats[key]["median"]), value["n"]] for key, value in stats.items()]
    image = ("Debian bookworm in 3 layers" if args.image == "debian"
             else "busybox + %d layers of %d MiB" % (args.layers, args.layer_mb))
    print("image: %s; load %s" % (image, bl.uptime_text()))
    print(bl.table(rows, ["what", "median ms", "p25", "p75", "CPU median", "n"]))
    warm_beyond_floor = stats["ocirt warm"]["median"] - stats["module floor"]["median"]
    print("warm check beyond the module floor: %.1f ms (target < 100 ms)" % warm_beyond_floor)
    ratios = {}
    for ours, theirs in (("ocirt cold", "podman cold"), ("ocirt cold, blobs only", "skopeo cold"),
                         ("ocirt first start", "podman first run")):
        # Paired: each round's ratio, then the median of those.
        wall = bl.paired_ratios(samples[ours], samples[theirs])["median"]
        cpu = bl.paired_ratios(CPU[ours], CPU[theirs])["median"]
        ratios["%s / %s" % (ours, theirs)] = dict(wall=wall, cpu=cpu)
        print("%s / %s: wall %.2f, CPU %.2f (target <= 1)" % (ours, theirs, wall, cpu))
    # Without the starts: what each pull does above a process of its own that does nothing.
    engines = dict(ours=[a - b for a, b in zip(samples["ocirt cold, blobs only"], samples["module floor"])],
                   skopeo=[a - b for a, b in zip(samples["skopeo cold"], samples["skopeo start"])])
    engine_ratio = bl.paired_ratios(engines["ours"], engines["skopeo"])["median"]
    print("above their starts: blobs only - module floor %.1f ms, skopeo cold - skopeo start %.1f ms: %.2f"
          % (bl.ms(bl.summary(engines["ours"])["median"]), bl.ms(bl.summary(engines["skopeo"])["median"]),
             engine_ratio))
    registry_cpu = dict((key, bl.ms(bl.summary(values)["median"])) for key, values in REGISTRY_CPU.items())
    print("the registry's CPU per cold pull: blobs only %.0f ms, skopeo %.0f ms, podman %.0f ms"
          % (registry_cpu["ocirt cold, blobs only"], registry_cpu["skopeo cold"], registry_cpu["podman cold"]))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(dict(stats=stats, cpu_stats=cpu_stats, samples=samples, cpu_samples=CPU, ratios=ratios,
                       warm_beyond_floor_ms=warm_beyond_floor, engine_ratio=engine_ratio,
                       registry_cpu_ms=registry_cpu, image=image,
                       revision=bl.git_revision(), load=bl.uptime_text()), handle, indent=1)


if __name__ == "__main__":
    main()
