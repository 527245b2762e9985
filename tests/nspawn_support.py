"""systemd booted by systemd-nspawn, for the tests that need a real systemd as PID 1.

The host has no systemd as PID 1. `booted_systemd()` boots one, as a
systemd-nspawn container, from a Debian root made once with debootstrap and
cached in NSPAWN_ROOT, on an overlay (so that runs elsewhere can share the
root), in a cgroup of its own, with cgroup v2 inside; everything is torn
down, overlay and cgroups included, when the `with` block ends. FILES, put
into the root before the boot, let a test install units that start at boot.
Used by tests/runtime/test_cgroup_v2.py (the systemd cgroup driver) and
tests/runtime/test_boot_unit.py (the role's boot unit).
"""
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from helpers import POLL_DELAY, POLL_TRIES, poll


def _host_unified():
    """Where this host mounts its cgroup2 hierarchy, or None."""
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    return None


HOST_UNIFIED = _host_unified()


def read(path):
    with open(path) as handle:
        return handle.read()


NSPAWN_ROOT = "/var/tmp/ocirt-test-nspawn-bookworm"
NSPAWN_PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-cffi-backend"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _debian_mirror():
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as handle:
            for line in handle:
                if line.startswith("URIs:"):
                    return line.split()[1]
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def _nspawn_root():
    """A Debian bookworm tree with systemd, cached in NSPAWN_ROOT (debootstrap, once), or skip."""
    if os.path.isdir(os.path.join(NSPAWN_ROOT, "usr", "lib", "systemd")):
        return NSPAWN_ROOT
    if not shutil.which("debootstrap"):
        pytest.skip("no systemd root in %s and no debootstrap to make one (apt-get install debootstrap)"
                    % NSPAWN_ROOT)
    building = NSPAWN_ROOT + ".building-%d" % os.getpid()
    log = building + ".log"
    with open(log, "w") as handle:
        code = subprocess.call(["debootstrap", "--variant=minbase", "--include=" + NSPAWN_PACKAGES, "bookworm",
                                building, _debian_mirror()], stdin=subprocess.DEVNULL, stdout=handle,
                               stderr=subprocess.STDOUT)
    if code != 0:
        shutil.rmtree(building, ignore_errors=True)
        pytest.skip("debootstrap of a systemd root failed (%d, no network?): see %s" % (code, log))
    os.rename(building, NSPAWN_ROOT)
    os.unlink(log)
    return NSPAWN_ROOT


def _named_systemd_hierarchy():
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup" and "name=systemd" in fields[sep + 3].split(","):
                return fields[4]
    return None


def _remove_cgroup_tree(directory):
    for dirpath, dirnames, _files in sorted(os.walk(directory), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass


class SystemdHost:
    """A booted systemd (PID 1 of a systemd-nspawn container, cgroup v2 inside) to run ocirt under."""

    def __init__(self, systemd_pid, bundles):
        self.systemd_pid = systemd_pid
        self.bundles = bundles

    def sh(self, script, check=True, env=None):
        """SCRIPT run by sh inside the container (every namespace of its systemd): CompletedProcess."""
        argv = ["nsenter", "-t", str(self.systemd_pid), "-a", "/bin/sh", "-c", script]
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                                env=env)
        if check and result.returncode != 0:
            raise AssertionError("in the systemd container: %s failed (%d): %s%s"
                                 % (script, result.returncode, result.stdout, result.stderr))
        return result

    def ocirt(self, *args, **kwargs):
        words = " ".join("'%s'" % a for a in args)
        return self.sh("%s/.venv/bin/ocirt %s </dev/null >/tmp/ocirt.out 2>/tmp/ocirt.err; code=$?; "
                       "cat /tmp/ocirt.out; cat /tmp/ocirt.err >&2; exit $code" % (REPO, words), **kwargs)

    def unit(self, name, *properties):
        out = self.sh("systemctl show %s %s" % (name, " ".join("-p " + p for p in properties))).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def bundle(self, name, args, config):
        import busybox_bundle
        return busybox_bundle.build_bundle(os.path.join(self.bundles, name), args=args, config=config)


@contextlib.contextmanager
def booted_systemd(files=None):
    """A SystemdHost: systemd booted by systemd-nspawn on an overlay of the cached root, with FILES
    ({path in the root: text, "->target" for a symlink, ("text", text, mode), or ("copy", directory)}) in place
    before the boot; or skip."""
    if not shutil.which("systemd-nspawn"):
        pytest.skip("no systemd-nspawn (apt-get install systemd-container)")
    if HOST_UNIFIED is None:
        pytest.skip("the host has no cgroup2 hierarchy for a cgroup v2 systemd")
    lower = _nspawn_root()
    session = tempfile.mkdtemp(prefix="ocirt-nspawn-", dir="/var/tmp")
    for name in ("upper", "work", "root", "bundles"):
        os.mkdir(os.path.join(session, name))
    # Also the machine's name, which systemd wants hostname-like.
    cgroup_name = "ocirt-nspawn-" + uuid.uuid4().hex[:12]
    cgroups = [os.path.join(h, cgroup_name) for h in (HOST_UNIFIED, _named_systemd_hierarchy()) if h]
    mounted = False
    nspawn = None
    try:
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s/upper,workdir=%s/work"
                        % (lower, session, session), os.path.join(session, "root")], check=True)
        mounted = True
        for path, text in (files or {}).items():
            target = os.path.join(session, "root", path.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if isinstance(text, tuple) and text[0] == "text":
                # ("text", content, mode): a file with that mode (a boot record 0600, a launcher 0755)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, text[2])
                with os.fdopen(fd, "w") as handle:
                    handle.write(text[1])
                os.chmod(target, text[2])
            elif isinstance(text, tuple):
                shutil.copytree(text[1], target, symlinks=True)  # ("copy", a directory of this host)
            elif text.startswith("->"):
                os.symlink(text[2:], target)
            else:
                with open(target, "w") as handle:
                    handle.write(text)
        for directory in cgroups:
            os.mkdir(directory)
        # nspawn without a host systemd makes its payload and supervisor cgroups below its own.
        join = "".join("echo $$ > %s/cgroup.procs; " % d for d in cgroups)
        command = ("%s exec systemd-nspawn -q -D %s/root --register=no --keep-unit --boot --capability=all --system-call-filter=bpf "
                   "--bind-ro=%s --bind=%s/bundles --machine=%s"
                   % (join, session, REPO, session, cgroup_name))
        with open(os.path.join(session, "nspawn.log"), "w") as log:
            nspawn = subprocess.Popen(["sh", "-c", command], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1"))

        def booted_systemd():
            for name in os.listdir("/proc"):
                if name.isdigit():
                    try:
                        stat_line = read("/proc/%s/stat" % name)
                    except OSError:
                        continue
                    if int(stat_line[stat_line.rindex(")") + 2:].split()[1]) == nspawn.pid:
                        return int(name) if read("/proc/%s/comm" % name).strip() == "systemd" else None
            return None

        def started():
            if nspawn.poll() is not None:
                log = read(os.path.join(session, "nspawn.log"))[-2000:]
                pytest.fail("systemd-nspawn exited (%d): %s" % (nspawn.returncode, log))
            return booted_systemd()
        pid = poll(started, "systemd to start in the nspawn container")
        host = SystemdHost(pid, os.path.join(session, "bundles"))
        # Hand the container what the host's v2 hierarchy has (hugetlb here). Possible only now:
        # nspawn has moved itself to its supervisor cgroup, and a cgroup with processes delegates nothing.
        for controller in read(os.path.join(cgroups[0], "cgroup.controllers")).split():
            with open(os.path.join(cgroups[0], "cgroup.subtree_control"), "w") as handle:
                handle.write("+" + controller)
        poll(lambda: host.sh("systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded"),
             "systemd to finish booting")
        yield host
        for container_id in host.ocirt("list", "-q", check=False).stdout.split():
            host.ocirt("delete", "--force", container_id, check=False)
    finally:
        if nspawn is not None:
            nspawn.terminate()  # nspawn asks the container's systemd to power off
            for dummy in range(POLL_TRIES):
                if nspawn.poll() is not None:
                    break
                time.sleep(POLL_DELAY)
            else:
                nspawn.kill()
                nspawn.wait()
        if mounted:
            subprocess.run(["umount", os.path.join(session, "root")], check=False)
        for directory in cgroups:
            _remove_cgroup_tree(directory)
        shutil.rmtree(session, ignore_errors=True)
