"""Managed hosts on this one machine: network namespaces, an sshd each, their own /run and cgroups.

Each host is a set of namespaces held open by a "keeper" process, and an
sshd started inside them. The keeper sleeps for the host's lifetime
(MULTIHOST_LIFETIME seconds, default 3600) and then kills every process of
its host through cgroup.kill, so hosts that no teardown reached end by
themselves; the next harness (or `harness.py down`) removes the rest.

- network: its own namespace, joined to the root namespace by a veth pair on
  the bridge ``mhbr0`` (10.77.0.1/24 in the root namespace; host N is
  10.77.0.(10+N)). These addresses are used by these namespaces only, and the
  hosts have no default route. No ``ip netns add``: the namespaces live as
  long as their processes, so nothing is bind-mounted under /run/netns.
- mount: its own namespace with private tmpfs on /run (so its own state root,
  /run/ocirt), /var/log, /root, /home and /srv; a per-host /etc/passwd, shadow,
  group, hosts and /etc/sudoers.d bound over the machine's (a user ``ocitest``
  with passwordless sudo exists on the hosts only). The rest of the
  filesystem is shared.
- cgroup: before unsharing, the keeper joins ``/multihost-N`` in every
  hierarchy; /sys/fs/cgroup is mounted again inside (a tmpfs with each v1
  hierarchy mounted by controller name, plus cgroup2 at ``unified``), so on
  the host ``/ocirt/<id>`` is ``/multihost-N/ocirt/<id>`` on the machine and
  hosts running containers with the same id do not collide. The host's own
  processes (keeper, sshd) sit in the leaf ``/multihost-N/host``.
- uts: hostname ``mhN``.
- a pure-v2 host (``Harness(v2=[N])``): instead of the machine's layout, only
  cgroup2 is mounted at /sys/fs/cgroup, so everything run over SSH there
  (modules, the runtime, ``stat -fc %T /sys/fs/cgroup``) sees a pure v2
  host. Its ``/ocirt/<id>`` is ``/multihost-N/ocirt/<id>`` of the machine's
  cgroup2 hierarchy (``unified`` here), and it has only the controllers that
  hierarchy has. Its processes stay in ``/multihost-N`` of the v1 hierarchies.

sshd: Debian's openssh-server, one per host, own host key and config,
key-only logins for root and ``ocitest`` (``StrictModes no``: the key file is
in a scratch directory). The client side writes a known_hosts file with each
host's key, and an ansible.cfg / inventory for ``ansible-playbook``.

Only one harness runs at a time (a lock on this file): the bridge, the
addresses and the cgroup names are fixed. ``Harness.up()`` first removes what
an earlier harness that died left, and tears down what it made if it fails.
``Harness.teardown()`` kills everything in the hosts' cgroups, removes the
cgroups, veths and bridge, the control-side ssh masters and the scratch
directory, and ``Harness.leftovers()`` says what, if anything, survived.

Command line (for playbooks that stop a host mid-play, and by hand)::

    harness.py up N [--v2 I]   # bring N hosts up (host I pure v2) and print the scratch dir (torn down by the next harness)
    harness.py down            # tear down whatever harnesses left
    harness.py stop-sshd BASE NAME
"""
import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(REPO, ".venv")
ANSIBLE_PLAYBOOK = os.path.join(VENV, "bin", "ansible-playbook")
COLLECTIONS = os.path.join(VENV, "collections")
CONTROL_PYTHON = os.path.join(VENV, "bin", "python")

BRIDGE = "mhbr0"
NETWORK_PREFIX = "10.77.0."
BRIDGE_ADDRESS = NETWORK_PREFIX + "1"
PREFIX_LENGTH = 24
VETH_PREFIX = "mhv"
CGROUP_MOUNT = "/sys/fs/cgroup"
CGROUP_PREFIX = "multihost-"
HOST_LEAF = "host"
SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
MANAGED_PYTHON = "/usr/bin/python3"
TEST_USER = "ocitest"
# One harness at a time on the machine, whichever checkout it runs from (the bridge, the addresses and
# the cgroup names are fixed): a lock of one fixed path, not of this file, which each clone has its own
# copy of. Not /tmp/multihost.lock, which the documented `flock` command around a run holds already.
LOCK_PATH = "/run/lock/daemonless-oci-multihost-harness.lock"
TEST_UID = 4242
PRIVATE_DIRS = ("/run", "/var/log", "/root", "/home", "/srv")
KEEPER_SECONDS = int(os.environ.get("MULTIHOST_LIFETIME", "3600"))
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL = 0.05


class HarnessError(Exception):
    pass


def run(argv, check=True, **kwargs):
    """subprocess.run with text output captured; raise HarnessError with the output on failure."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(argv, check=False, **kwargs)
    if check and result.returncode != 0:
        raise HarnessError("%s failed (%d): %s%s" % (" ".join(argv), result.returncode, result.stdout, result.stderr))
    return result


def wait_for(predicate, timeout, what):
    """Poll PREDICATE until true, at most TIMEOUT seconds; raise HarnessError naming WHAT."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(POLL)


# -- processes -----------------------------------------------------------------------------

def process_state(pid):
    """The one-letter state of PID, or None when it is gone. PID 1 here reaps slowly: Z counts as gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2]


def alive(pid):
    return process_state(pid) not in (None, "Z", "X")


def process_cgroup(pid, hierarchy_key=None):
    """PID's cgroup path in the unified hierarchy (key '') or the v1 hierarchy whose controllers are HIERARCHY_KEY."""
    try:
        with open("/proc/%d/cgroup" % pid) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    paths = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    if hierarchy_key is not None:
        return paths.get(hierarchy_key)
    return paths.get("pids") or paths.get("") or next(iter(paths.values()), None)


def process_exe(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def kill_and_wait(pids, timeout=STOP_TIMEOUT, first=signal.SIGTERM):
    """Send FIRST to PIDS, SIGKILL whatever is still alive halfway through TIMEOUT; wait until all are gone."""
    for pid in pids:
        try:
            os.kill(pid, first)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    killed = first == signal.SIGKILL
    while True:
        living = [pid for pid in pids if alive(pid)]
        if not living:
            return
        now = time.monotonic()
        if not killed and now >= deadline - timeout / 2:
            for pid in living:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            killed = True
        if now >= deadline:
            raise HarnessError("processes still alive after %.0fs: %s" % (timeout, living))
        time.sleep(POLL)


# -- cgroups -------------------------------------------------------------------------------

def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup_mounts(mountinfo="/proc/self/mountinfo"):
    """The machine's cgroup hierarchies under /sys/fs/cgroup: [(mountpoint, fstype, options, key)].

    KEY is the controller list as /proc/PID/cgroup names the hierarchy ('' for cgroup2).
    """
    found = []
    seen = set()
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3]
            mountpoint = _unescape(fields[4])
            if fstype not in ("cgroup", "cgroup2") or not (mountpoint + "/").startswith(CGROUP_MOUNT + "/"):
                continue
            if fstype == "cgroup":
                options = [o for o in superopts.split(",") if o not in ("rw", "ro")]
                key = ",".join(options)
                if all(o.startswith("name=") or o in ("xattr", "clone_children", "noprefix") for o in options):
                    options = ["none"] + options
            else:
                options = []
                key = ""
            if key in seen:
                continue
            seen.add(key)
            found.append((mountpoint, fstype, ",".join(options), key))
    if not found:
        raise HarnessError("no cgroup hierarchy mounted under %s" % CGROUP_MOUNT)
    return found


def unified_mount(mounts):
    """Where the machine's cgroup2 hierarchy is mounted, or None."""
    return next((mountpoint for mountpoint, fstype, dummy, dummy2 in mounts if fstype == "cgroup2"), None)


def cgroup_dirs(name, mounts=None):
    """The directories of cgroup /NAME in every hierarchy."""
    return [os.path.join(mountpoint, name) for mountpoint, dummy, dummy2, dummy3 in (mounts or cgroup_mounts())]


def _copy_cpuset(parent, child):
    for name in ("cpuset.cpus", "cpuset.mems"):
        path = os.path.join(child, name)
        if os.path.exists(path):
            with open(path) as handle:
                if handle.read().strip():
                    continue
            with open(os.path.join(parent, name)) as handle:
                value = handle.read().strip()
            with open(path, "w") as handle:
                handle.write(value + "\n")


def make_cgroup(name, mounts=None):
    """mkdir /NAME/host in every hierarchy (cpuset: cpus and mems copied down)."""
    for directory in cgroup_dirs(name, mounts):
        leaf = os.path.join(directory, HOST_LEAF)
        os.makedirs(leaf, exist_ok=True)
        _copy_cpuset(os.path.dirname(directory), directory)
        _copy_cpuset(directory, leaf)


def join_cgroup(path, pid=0):
    """Move PID (0: the caller) into cgroup PATH (relative to each hierarchy's root) in every hierarchy."""
    for directory in cgroup_dirs(path):
        with open(os.path.join(directory, "cgroup.procs"), "w") as handle:
            handle.write("%d\n" % (pid or os.getpid()))


def cgroup_tree(name, mounts=None):
    """Every directory of cgroup /NAME and below, in every hierarchy, deepest first."""
    found = []
    for directory in cgroup_dirs(name, mounts):
        if os.path.isdir(directory):
            for dirpath, dummy, dummy2 in os.walk(directory, topdown=False):
                found.append(dirpath)
    return found


def cgroup_pids(name, mounts=None):
    """Pids in cgroup /NAME or below, in any hierarchy."""
    pids = set()
    for directory in cgroup_tree(name, mounts):
        try:
            with open(os.path.join(directory, "cgroup.procs")) as handle:
                pids.update(int(line) for line in handle if line.strip())
        except OSError:
            pass
    return sorted(pids)


def destroy_cgroup(name, timeout=STOP_TIMEOUT):
    """Kill every process in cgroup /NAME and below, then remove the directories. Bounded."""
    mounts = cgroup_mounts()
    unified = [mountpoint for mountpoint, fstype, dummy, dummy2 in mounts if fstype == "cgroup2"]
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid in cgroup_pids(name, mounts) if alive(pid)]
        if not pids:
            break
        kill_file = os.path.join(unified[0], name, "cgroup.kill") if unified else None
        if kill_file and os.path.exists(kill_file):
            with open(kill_file, "w") as handle:
                handle.write("1\n")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() >= deadline:
            raise HarnessError("cgroup /%s: processes still alive after %.0fs: %s" % (name, timeout, pids))
        time.sleep(POLL)
    while True:
        errors = []
        for directory in cgroup_tree(name, mounts):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                errors.append("%s: %s" % (directory, exc.strerror))
        if not errors:
            return
        if time.monotonic() >= deadline:
            raise HarnessError("cannot remove cgroups: %s" % "; ".join(errors))
        time.sleep(POLL)


# -- network -------------------------------------------------------------------------------

def link_exists(name):
    return os.path.exists("/sys/class/net/%s" % name)


def tcp_open(address, port=22):
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


# -- the hosts -----------------------------------------------------------------------------

SETUP_SCRIPT = """\
set -eu
hostname {name}
# Mounts the machine has under the directories made private (ip netns's /run/netns) are not this host's.
for m in $(awk '{{print $5}}' /proc/self/mountinfo | grep -E '^({private_re})/' | sort -r); do
  umount -l "$m" 2>/dev/null || true
done
for d in {private}; do
  mount -t tmpfs -o mode=0755,nosuid,nodev multihost-{index} "$d"
done
chmod 0700 /root
mkdir -p /run/sshd /run/lock /home/{user}
chmod 0755 /run/sshd
chown {uid}:{uid} /home/{user}
chmod 0700 /home/{user}
for f in passwd shadow group hosts hostname; do
  mount --bind {hostdir}/etc/$f /etc/$f
done
mount --bind {hostdir}/etc/sudoers.d /etc/sudoers.d
# sysfs of this network namespace, and the cgroup hierarchies as this cgroup namespace sees them.
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
{cgroup_mounts}
for d in {leaf_dirs}; do
  echo $$ > "$d/cgroup.procs"
done
echo ready > {hostdir}/ready
# A host no harness tore down ends itself after its lifetime: every process in its cgroup.
sleep {seconds} || true
for f in {kill_files}; do
  [ -e "$f" ] && echo 1 > "$f"
done
"""

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {hostdir}/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile {base}/authorized_keys
AllowUsers root {user}
Subsystem sftp internal-sftp
MaxSessions 64
MaxStartups 64
UseDNS no
PrintMotd no
LogLevel VERBOSE
"""


class Host:
    """One managed host: its namespaces' keeper, its sshd, its cgroup."""

    def __init__(self, harness, index, v2=False):
        self.harness = harness
        self.index = index
        self.v2 = v2
        self.name = "mh%d" % index
        self.address = NETWORK_PREFIX + str(10 + index)
        self.veth = VETH_PREFIX + str(index)
        self.cgroup = CGROUP_PREFIX + str(index)
        self.dir = os.path.join(harness.base, self.name)
        self.keeper = None
        self.sshd = None

    # Where the host's things are, seen from the machine.
    def cgroup_file(self, hierarchy, host_path, filename):
        """A cgroup file as the machine sees it, for HOST_PATH as the host sees it (e.g. /ocirt/web)."""
        return os.path.join(CGROUP_MOUNT, hierarchy, self.cgroup, host_path.lstrip("/"), filename)

    def unified_dir(self, host_path):
        """The machine's directory of HOST_PATH (as the host sees it) in the cgroup2 hierarchy, or None without one."""
        mountpoint = unified_mount(self.harness.mounts)
        if mountpoint is None:
            return None
        return os.path.join(mountpoint, self.cgroup, host_path.lstrip("/"))

    @property
    def layout(self):
        """What /sys/fs/cgroup is on the host: 'v2' for a pure-v2 host, else the machine's."""
        return "v2" if self.v2 else "machine"

    def read_cgroup(self, hierarchy, host_path, filename):
        with open(self.cgroup_file(hierarchy, host_path, filename)) as handle:
            return handle.read().strip()

    def mountinfo(self):
        """The host's mount table (read through its keeper)."""
        with open("/proc/%d/mountinfo" % self.keeper.pid) as handle:
            return handle.read()

    def container_cgroups(self):
        """Cgroup directories below the host's /ocirt, in every hierarchy (machine paths)."""
        found = []
        for directory in cgroup_dirs(os.path.join(self.cgroup, "ocirt")):
            if os.path.isdir(directory):
                found.extend(os.path.join(directory, d) for d in os.listdir(directory)
                             if os.path.isdir(os.path.join(directory, d)))
        return sorted(found)

    def container_pids(self):
        return [pid for pid in cgroup_pids(os.path.join(self.cgroup, "ocirt")) if alive(pid)]

    def state_entries(self):
        """What the host's state root (/run/ocirt) holds, but the runtime's code cache."""
        path = "/proc/%d/root/run/ocirt" % self.keeper.pid
        if not os.path.isdir(path):
            return []
        return sorted(e for e in os.listdir(path) if e != "=monitor")

    def sshd_pids(self):
        """The host's sshd processes: the listener and one or two per connection."""
        found = []
        prefix = "/" + self.cgroup + "/"
        for pid in all_pids():
            if process_exe(pid) != SSHD or not alive(pid):
                continue
            path = process_cgroup(pid)
            if path and (path + "/").startswith(prefix) and not path.startswith(prefix + "ocirt"):
                found.append(pid)
        return found

    # Bringing it up.
    def write_files(self):
        os.makedirs(os.path.join(self.dir, "etc", "sudoers.d"))
        os.chmod(self.dir, 0o755)
        etc = os.path.join(self.dir, "etc")
        with open("/etc/passwd") as handle:
            passwd = [line for line in handle.read().splitlines() if not line.startswith(TEST_USER + ":")]
        passwd.append("%s:x:%d:%d:multihost test user:/home/%s:/bin/sh" % (TEST_USER, TEST_UID, TEST_UID, TEST_USER))
        with open("/etc/group") as handle:
            group = [line for line in handle.read().splitlines() if not line.startswith(TEST_USER + ":")]
        group.append("%s:x:%d:" % (TEST_USER, TEST_UID))
        shadow = []
        with open("/etc/shadow") as handle:
            for line in handle.read().splitlines():
                fields = line.split(":")
                if fields[0] == TEST_USER:
                    continue
                if fields[0] == "root":
                    # Key-only logins: "*" (no password), never "!" (locked: sshd refuses keys too without PAM).
                    fields[1] = "*"
                shadow.append(":".join(fields))
        shadow.append("%s:*:19000:0:99999:7:::" % TEST_USER)
        files = {
            "passwd": ("\n".join(passwd) + "\n", 0o644),
            "group": ("\n".join(group) + "\n", 0o644),
            "shadow": ("\n".join(shadow) + "\n", 0o640),
            "hosts": ("127.0.0.1 localhost\n127.0.1.1 %s\n%s %s\n" % (self.name, self.address, self.name), 0o644),
            "hostname": (self.name + "\n", 0o644),
            "sudoers.d/%s" % TEST_USER: ("%s ALL=(ALL:ALL) NOPASSWD: ALL\n" % TEST_USER, 0o440),
        }
        for name, (content, mode) in files.items():
            path = os.path.join(etc, name)
            with open(path, "w") as handle:
                handle.write(content)
            os.chmod(path, mode)
        try:
            shutil.chown(os.path.join(etc, "shadow"), group="shadow")
        except (LookupError, OSError):
            pass
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name,
             "-f", os.path.join(self.dir, "ssh_host_ed25519_key")])
        with open(os.path.join(self.dir, "sshd_config"), "w") as handle:
            handle.write(SSHD_CONFIG.format(address=self.address, hostdir=self.dir, base=self.harness.base, user=TEST_USER))
        mounts = self.harness.mounts
        lines = []
        if self.v2:
            # The cgroup namespace's root (/multihost-N) of the one cgroup2 hierarchy, and nothing else.
            if unified_mount(mounts) is None:
                raise HarnessError("%s: the machine has no cgroup2 hierarchy to give a pure-v2 host" % self.name)
            lines.append("mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 %s" % CGROUP_MOUNT)
            mounts = [(CGROUP_MOUNT, "cgroup2", "", "")]
        elif len(mounts) == 1 and mounts[0][0] == CGROUP_MOUNT:
            lines.append("mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 %s" % CGROUP_MOUNT)
        else:
            lines.append("mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup %s" % CGROUP_MOUNT)
            for mountpoint, fstype, options, dummy in mounts:
                lines.append("mkdir -p %s" % mountpoint)
                if fstype == "cgroup2":
                    lines.append("mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 %s" % mountpoint)
                else:
                    lines.append("mount -t cgroup -o nosuid,nodev,noexec,%s cgroup %s" % (options, mountpoint))
            for entry in sorted(os.listdir(CGROUP_MOUNT)):
                path = os.path.join(CGROUP_MOUNT, entry)
                if os.path.islink(path):
                    lines.append("ln -s %s %s" % (os.readlink(path), path))
        # As the host sees them (a pure-v2 host: its cgroup2 mount only).
        leaf_dirs = " ".join(os.path.join(m[0], HOST_LEAF) for m in mounts)
        script = SETUP_SCRIPT.format(
            name=self.name, index=self.index, hostdir=self.dir, user=TEST_USER, uid=TEST_UID,
            private=" ".join(PRIVATE_DIRS), private_re="|".join(re.escape(d) for d in PRIVATE_DIRS),
            cgroup_mounts="\n".join(lines), leaf_dirs=leaf_dirs, seconds=KEEPER_SECONDS,
            kill_files=" ".join(os.path.join(m[0], "cgroup.kill") for m in mounts if m[1] == "cgroup2") or "none")
        with open(os.path.join(self.dir, "setup.sh"), "w") as handle:
            handle.write(script)

    def public_host_key(self):
        with open(os.path.join(self.dir, "ssh_host_ed25519_key.pub")) as handle:
            return " ".join(handle.read().split()[:2])

    def start_keeper(self):
        make_cgroup(self.cgroup, self.harness.mounts)
        cgroup = self.cgroup
        with open(os.path.join(self.dir, "keeper.log"), "ab") as log:
            self.keeper = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn
                ["unshare", "--net", "--mount", "--uts", "--cgroup", "--propagation", "private",
                 "sh", os.path.join(self.dir, "setup.sh")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: join_cgroup(cgroup))
        ready = os.path.join(self.dir, "ready")
        wait_for(lambda: os.path.exists(ready) or self.keeper.poll() is not None, START_TIMEOUT, "%s's namespaces" % self.name)
        if not os.path.exists(ready):
            raise HarnessError("%s: namespace setup failed: %s" % (self.name, self.log("keeper.log")))

    def start_network(self):
        pid = str(self.keeper.pid)
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", pid])
        run(["ip", "link", "set", self.veth, "master", BRIDGE, "up"])
        enter = ["nsenter", "--target", pid, "--net"]
        run(enter + ["ip", "link", "set", "lo", "up"])
        run(enter + ["ip", "addr", "add", "%s/%d" % (self.address, PREFIX_LENGTH), "dev", "eth0"])
        run(enter + ["ip", "link", "set", "eth0", "up"])

    def start_sshd(self):
        """Start the host's sshd inside its namespaces, in its cgroup; wait until it accepts connections."""
        if self.sshd is not None and self.sshd.poll() is None:
            raise HarnessError("%s: sshd already running" % self.name)
        leaf = os.path.join(self.cgroup, HOST_LEAF)
        with open(os.path.join(self.dir, "sshd.log"), "ab") as log:
            self.sshd = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn
                ["nsenter", "--target", str(self.keeper.pid), "--net", "--mount", "--uts", "--cgroup", "--",
                 SSHD, "-D", "-e", "-f", os.path.join(self.dir, "sshd_config")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: join_cgroup(leaf))
        wait_for(lambda: self.sshd.poll() is not None or tcp_open(self.address), START_TIMEOUT, "%s's sshd" % self.name)
        if self.sshd.poll() is not None:
            raise HarnessError("%s: sshd exited (%s): %s" % (self.name, self.sshd.returncode, self.log("sshd.log")))

    def stop_sshd(self):
        """Stop the host's sshd and its connections (the host becomes unreachable); its containers stay."""
        kill_and_wait(self.sshd_pids())
        if self.sshd is not None:
            self.sshd.poll()

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as handle:
                return handle.read()[-4000:]
        except OSError:
            return ""

    def destroy(self, errors):
        """Kill everything of the host (its cgroup holds all its processes), remove its cgroups and veth."""
        try:
            destroy_cgroup(self.cgroup)
        except (HarnessError, OSError) as exc:
            errors.append("%s: %s" % (self.name, exc))
        for process in (self.sshd, self.keeper):
            if process is not None:
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    errors.append("%s: pid %d did not exit" % (self.name, process.pid))
        if link_exists(self.veth):
            result = run(["ip", "link", "del", self.veth], check=False)
            if result.returncode != 0 and link_exists(self.veth):
                errors.append("%s: %s" % (self.veth, result.stderr.strip()))


class Harness:
    """N managed hosts reachable over SSH, and what ansible-playbook needs to reach them."""

    def __init__(self, count=3, base=None, v2=()):
        """COUNT hosts mh1..mhCOUNT; those whose index is in V2 get a pure cgroup v2 layout."""
        if count < 1 or count > 200:
            raise HarnessError("host count %d out of range" % count)
        if any(i < 1 or i > count for i in v2):
            raise HarnessError("pure-v2 host index out of range: %s" % list(v2))
        self.count = count
        self.base = base or tempfile.mkdtemp(prefix="multihost-")
        os.chmod(self.base, 0o755)
        self.lock = None
        self.mounts = None
        self.hosts = [Host(self, i, v2=i in v2) for i in range(1, count + 1)]
        self.client_key = os.path.join(self.base, "client_key")
        self.known_hosts = os.path.join(self.base, "known_hosts")
        self.control_dir = os.path.join(self.base, "cp")

    def by_name(self, name):
        return next(h for h in self.hosts if h.name == name)

    # -- up and down -----------------------------------------------------------------------
    def acquire_lock(self, timeout=120.0):
        """One harness at a time on this machine (the bridge, addresses and cgroup names are fixed)."""
        self.lock = _lock_file()
        wait_for(lambda: _try_lock(self.lock), timeout, "another multihost harness to finish")

    def up(self):
        """Bring every host up; on any failure tear down what was made and raise."""
        for tool in (SSHD, SSH, "/usr/bin/ssh-keygen", "/usr/bin/nsenter", "/usr/bin/unshare", MANAGED_PYTHON):
            if not os.access(tool, os.X_OK):
                raise HarnessError("%s is missing (Debian: openssh-server, openssh-client, util-linux, python3)" % tool)
        self.acquire_lock()
        clean_stale(keep=self.base)
        try:
            self.mounts = cgroup_mounts()
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "multihost-client", "-f", self.client_key])
            with open(self.client_key + ".pub") as handle:
                public = handle.read()
            with open(os.path.join(self.base, "authorized_keys"), "w") as handle:
                handle.write(public)
            os.chmod(os.path.join(self.base, "authorized_keys"), 0o644)
            os.makedirs(self.control_dir)
            run(["ip", "link", "add", BRIDGE, "type", "bridge"])
            run(["ip", "addr", "add", "%s/%d" % (BRIDGE_ADDRESS, PREFIX_LENGTH), "dev", BRIDGE])
            run(["ip", "link", "set", BRIDGE, "up"])
            for host in self.hosts:
                host.write_files()
                host.start_keeper()
                host.start_network()
                host.start_sshd()
            with open(self.known_hosts, "w") as handle:
                for host in self.hosts:
                    handle.write("%s %s\n" % (host.address, host.public_host_key()))
            self.write_state()
        except BaseException:
            self.teardown()
            raise
        return self

    def write_state(self):
        state = {"count": self.count, "base": self.base,
                 "hosts": dict((h.name, {"address": h.address, "keeper": h.keeper.pid, "cgroup": h.cgroup, "v2": h.v2})
                               for h in self.hosts if h.keeper is not None)}
        with open(os.path.join(self.base, "state.json"), "w") as handle:
            json.dump(state, handle, indent=1)

    def teardown(self):
        """Remove every trace; return the problems met (empty when all went)."""
        errors = []
        kill_ssh_clients(self.base)
        for host in self.hosts:
            host.destroy(errors)
        if link_exists(BRIDGE):
            result = run(["ip", "link", "del", BRIDGE], check=False)
            if result.returncode != 0:
                errors.append("%s: %s" % (BRIDGE, result.stderr.strip()))
        shutil.rmtree(self.base, ignore_errors=True)
        if self.lock is not None:
            self.lock.close()
            self.lock = None
        return errors

    def leftovers(self):
        """What of any harness is still on the machine: [] when nothing."""
        return machine_leftovers(self.base)

    # -- Ansible ---------------------------------------------------------------------------
    def inventory(self, user="root", extra=None):
        """An INI inventory of the hosts for USER, written under the scratch dir; returns its path."""
        path = os.path.join(self.base, "inventory-%s.ini" % user)
        lines = ["[oci_hosts]"]
        for host in self.hosts:
            lines.append("%s ansible_host=%s host_index=%d host_cgroup=%s host_cgroup_layout=%s"
                         % (host.name, host.address, host.index, host.cgroup, host.layout))
        lines += [
            "",
            "[oci_hosts:vars]",
            "ansible_user=%s" % user,
            "ansible_port=22",
            "ansible_ssh_private_key_file=%s" % self.client_key,
            "ansible_python_interpreter=%s" % MANAGED_PYTHON,
            "ansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o ConnectTimeout=5'" % self.known_hosts,
        ]
        for key, value in sorted((extra or {}).items()):
            lines.append("%s=%s" % (key, value))
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    def ansible_env(self, forks=None, pipelining=False):
        cfg = os.path.join(self.base, "ansible.cfg")
        with open(cfg, "w") as handle:
            handle.write("[defaults]\nforks = %d\nhost_key_checking = True\ntimeout = 10\n"
                         "interpreter_python = %s\nretry_files_enabled = False\n"
                         "[ssh_connection]\ncontrol_path_dir = %s\npipelining = %s\nretries = 0\n"
                         % (forks or max(self.count, 5), MANAGED_PYTHON, self.control_dir, pipelining))
        env = dict(os.environ)
        env.update({
            "ANSIBLE_CONFIG": cfg,
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_HOME": os.path.join(self.base, "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": os.path.join(self.base, "ansible-local"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_PYTHON_INTERPRETER": MANAGED_PYTHON,
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        return env

    def playbook(self, playbook, inventory, extra_vars=None, forks=None, pipelining=False, limit=None, timeout=600):
        """Run ansible-playbook; return a PlayResult (rc, output, per-host recap)."""
        argv = [ANSIBLE_PLAYBOOK, "-i", inventory, os.path.abspath(playbook)]
        variables = {"results_dir": os.path.join(self.base, "results"),
                     "harness_python": CONTROL_PYTHON, "harness_script": os.path.abspath(__file__),
                     "harness_base": self.base}
        variables.update(extra_vars or {})
        argv += ["-e", json.dumps(variables)]
        if limit:
            argv += ["--limit", limit]
        os.makedirs(variables["results_dir"], exist_ok=True)
        started = time.monotonic()
        result = subprocess.run(argv, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                env=self.ansible_env(forks, pipelining), timeout=timeout, cwd=self.base)
        return PlayResult(result.returncode, result.stdout + result.stderr, time.monotonic() - started,
                          variables["results_dir"])


def _lock_file():
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    return open(LOCK_PATH, "ab")  # pylint: disable=consider-using-with


def _try_lock(handle):
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+"
                   r"skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


class PlayResult:
    """An ansible-playbook run: exit code, output, the PLAY RECAP per host, and the reports tasks wrote."""

    def __init__(self, rc, output, seconds, results_dir):
        self.rc = rc
        self.output = output
        self.seconds = seconds
        self.results_dir = results_dir
        self.recap = {}
        for match in RECAP.finditer(output):
            counts = [int(v) for v in match.groups()[1:]]
            self.recap[match.group(1)] = dict(zip(("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored"),
                                                  counts))

    def report(self, host, phase):
        with open(os.path.join(self.results_dir, "%s-%s.json" % (host, phase))) as handle:
            return json.load(handle)

    def __str__(self):
        return "rc=%d in %.1fs\n%s" % (self.rc, self.seconds, self.output[-12000:])


# -- leftovers and stale runs --------------------------------------------------------------

def kill_ssh_clients(base):
    """Control-side ssh processes of a harness (ControlPersist masters hold sockets under BASE)."""
    pids = []
    for pid in all_pids():
        if process_exe(pid) != SSH:
            continue
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().decode(errors="replace")
        except OSError:
            continue
        if base in cmdline:
            pids.append(pid)
    if pids:
        kill_and_wait(pids)


def harness_cgroups():
    """Names of harness cgroups (multihost-N) in any hierarchy."""
    names = set()
    for mountpoint, dummy, dummy2, dummy3 in cgroup_mounts():
        try:
            names.update(n for n in os.listdir(mountpoint) if re.match(r"^%s\d+$" % CGROUP_PREFIX, n))
        except OSError:
            pass
    return sorted(names)


def harness_links():
    return sorted(n for n in os.listdir("/sys/class/net") if n == BRIDGE or re.match(r"^%s\d+$" % VETH_PREFIX, n))


def machine_leftovers(base=None):
    """Everything a harness could leave on the machine, as problem strings."""
    problems = []
    names = harness_cgroups()
    if names:
        problems.append("cgroups: %s" % names)
        pids = [pid for name in names for pid in cgroup_pids(name) if alive(pid)]
        if pids:
            problems.append("processes in them: %s" % pids)
    links = harness_links()
    if links:
        problems.append("links: %s" % links)
    with open("/proc/self/mountinfo") as handle:
        mounts = [line.split()[4] for line in handle if "multihost" in line]
    if mounts:
        problems.append("mounts: %s" % mounts)
    if base:
        if os.path.exists(base):
            problems.append("scratch dir %s" % base)
        clients = [pid for pid in all_pids() if process_exe(pid) == SSH and alive(pid) and _cmdline_has(pid, base)]
        if clients:
            problems.append("ssh clients: %s" % clients)
    for pid in all_pids():
        if process_exe(pid) == SSHD and alive(pid):
            path = process_cgroup(pid) or ""
            if path.startswith("/" + CGROUP_PREFIX):
                problems.append("sshd %d in %s" % (pid, path))
    return problems


def _cmdline_has(pid, text):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return text in handle.read().decode(errors="replace")
    except OSError:
        return False


def stale_bases(keep=None):
    """Scratch directories of harnesses (they hold a state.json), but KEEP."""
    tmp = tempfile.gettempdir()
    found = []
    for name in sorted(os.listdir(tmp)):
        path = os.path.join(tmp, name)
        if name.startswith("multihost-") and path != keep and os.path.isfile(os.path.join(path, "state.json")):
            found.append(path)
    return found


def clean_stale(keep=None):
    """Remove what harnesses that died without their teardown left (call with the lock held)."""
    for base in stale_bases(keep):
        kill_ssh_clients(base)
    for name in harness_cgroups():
        destroy_cgroup(name)
    for name in harness_links():
        run(["ip", "link", "del", name], check=False)
    for base in stale_bases(keep):
        shutil.rmtree(base, ignore_errors=True)


# -- command line --------------------------------------------------------------------------

def _stop_sshd_by_name(base, name):
    with open(os.path.join(base, "state.json")) as handle:
        state = json.load(handle)
    cgroup = state["hosts"][name]["cgroup"]
    prefix = "/" + cgroup + "/"
    pids = [pid for pid in all_pids() if process_exe(pid) == SSHD and alive(pid)
            and ((process_cgroup(pid) or "") + "/").startswith(prefix)]
    if not pids:
        raise HarnessError("%s: no sshd running" % name)
    kill_and_wait(pids)
    return pids


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring N hosts up (stays up until `down`)")
    up.add_argument("count", type=int)
    up.add_argument("--v2", type=int, action="append", default=[], metavar="N", help="host N gets a pure cgroup v2 layout")
    sub.add_parser("down", help="tear down what any harness left on this machine")
    stop = sub.add_parser("stop-sshd", help="stop a host's sshd and its connections")
    stop.add_argument("base")
    stop.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "up":
        harness = Harness(args.count, v2=args.v2).up()
        harness.lock.close()
        print(harness.base)
        for host in harness.hosts:
            print("%s %s keeper=%d sshd=%d" % (host.name, host.address, host.keeper.pid, host.sshd.pid))
        return 0
    if args.command == "down":
        lock = _lock_file()
        try:
            wait_for(lambda: _try_lock(lock), 120.0, "another multihost harness to finish")
            clean_stale()
        finally:
            lock.close()
        problems = machine_leftovers()
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    pids = _stop_sshd_by_name(args.base, args.name)
    print("stopped sshd of %s: %s" % (args.name, pids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
