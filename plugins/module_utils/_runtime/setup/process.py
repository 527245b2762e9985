# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""process.*: rlimits, user and groups, capabilities, cwd, env, the executable,
and which descriptors survive into the container.

The steps of finalize.py's sequence (which holds their order), applied after
the root switch: the bounding set drops while CAP_SETPCAP is held; ids switch
with KEEPCAPS so permitted survives setuid; then the effective/permitted/
inheritable sets, and the ambient set last.
"""
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import CAPABILITY_NUMBERS, RLIMITS

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def close_fds_except(keep):
    """Close every descriptor of this process not in KEEP (after fork: no lock or pipe of the parent leaks)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def set_rlimits(rlimits):
    for index, rlimit in enumerate(rlimits or []):
        try:
            syscalls.setrlimit(RLIMITS[rlimit["type"]], rlimit["soft"], rlimit["hard"])
        except (OSError, ValueError, OverflowError) as exc:
            raise OCIError("process.rlimits[%d] (%s soft %d hard %d): %s"
                           % (index, rlimit["type"], rlimit["soft"], rlimit["hard"],
                              os.strerror(exc.errno) if getattr(exc, "errno", None) else exc))


def _mask(names):
    mask = 0
    for name in names or []:
        mask |= 1 << CAPABILITY_NUMBERS[name]
    return mask


def last_capability():
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        return int(handle.read())


def set_user_and_capabilities(user, capabilities, last_cap):
    """Drop the bounding set, switch ids keeping permitted caps, then set the other sets.

    LAST_CAP comes from the host's /proc, read before the root switch: the
    container may have no /proc of its own.
    """
    uid = user.get("uid", 0)
    gid = user.get("gid", 0)
    if capabilities is not None:
        bounding = _mask(capabilities.get("bounding"))
        for cap in range(last_cap + 1):
            if not bounding & (1 << cap):
                try:
                    syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)
                except OSError as exc:
                    raise OCIError("process.capabilities.bounding: cannot drop capability %d: %s"
                                   % (cap, exc.strerror))
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    try:
        syscalls.setgroups(user.get("additionalGids") or [])
    except OSError as exc:
        raise OCIError("process.user.additionalGids %s: %s" % (user.get("additionalGids") or [], exc.strerror))
    try:
        syscalls.setresgid(gid, gid, gid)
    except OSError as exc:
        raise OCIError("process.user.gid %d: %s" % (gid, exc.strerror))
    try:
        syscalls.setresuid(uid, uid, uid)
    except OSError as exc:
        raise OCIError("process.user.uid %d: %s" % (uid, exc.strerror))
    if syscalls.getresuid() != (uid, uid, uid) or syscalls.getresgid() != (gid, gid, gid):
        raise OCIError("process.user: the process is uid %s gid %s, not %d:%d"
                       % (syscalls.getresuid(), syscalls.getresgid(), uid, gid))
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    if capabilities is None:
        return
    effective = _mask(capabilities.get("effective"))
    permitted = _mask(capabilities.get("permitted"))
    inheritable = _mask(capabilities.get("inheritable"))
    try:
        syscalls.capset(effective, permitted, inheritable)
    except OSError as exc:
        raise OCIError("process.capabilities: cannot set effective/permitted/inheritable "
                       "(effective must be within permitted): %s" % exc.strerror)
    # The kernel only raises an ambient capability that is both permitted and
    # inheritable; like runc, others are skipped rather than failing the
    # container (`runc spec` itself lists ambient caps without inheritable).
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in capabilities.get("ambient") or []:
        cap = CAPABILITY_NUMBERS[name]
        if permitted & inheritable & (1 << cap):
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, cap)


def environment(env):
    result = {}
    for entry in env or []:
        key, value = entry.partition("=")[::2]
        if key:
            result[key] = value
    return result


PASSWD_LIMIT = 1 << 20


def home_directory(uid, passwd="/etc/passwd"):
    """The home directory of UID in PASSWD as this process sees it (after the root switch: the
    image's file, never the host's); "/" when there is no entry, or no readable regular file.

    Opened without blocking: an image's /etc/passwd may be a FIFO or a device node.
    """
    try:
        fd = os.open(passwd, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return "/"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "/"
        data = os.read(fd, PASSWD_LIMIT)
    except OSError:
        return "/"
    finally:
        os.close(fd)
    wanted = str(uid).encode()
    for line in data.splitlines():
        fields = line.split(b":")
        if len(fields) >= 7 and fields[2] == wanted:
            return fields[5].decode("utf-8", "surrogateescape") or "/"
    return "/"


def change_directory(cwd):
    try:
        syscalls.chdir(cwd)
    except OSError as exc:
        raise OCIError("process.cwd %s: %s" % (cwd, exc.strerror))
    # A cwd reached through a descriptor of the runtime (/proc/self/fd/N) would
    # sit outside the container's root (CVE-2024-21626): refuse it.
    try:
        inside = _cwd_is_under_root()
    except OSError as exc:
        raise OCIError("process.cwd %s: cannot check that it lies in the container: %s" % (cwd, exc.strerror))
    if not inside:
        raise OCIError("process.cwd %s: resolves outside the container's root" % cwd)


def _cwd_is_under_root():
    """Whether walking ".." up from the cwd meets this process's root.

    Not getcwd(2): a seccomp profile may refuse it, and without noNewPrivileges
    the filter is already loaded here (runtime-tools' seccomp test denies
    getcwd). ".." stops at the process's root; from a directory outside it,
    the walk ends at the top of another tree without meeting it.
    """
    root = os.stat("/")
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        here = os.fstat(fd)
        while (here.st_dev, here.st_ino) != (root.st_dev, root.st_ino):
            parent = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = parent
            above = os.fstat(fd)
            if (above.st_dev, above.st_ino) == (here.st_dev, here.st_ino):
                return False
            here = above
        return True
    finally:
        os.close(fd)


def find_executable(args, env):
    """The path to exec for process.args[0]: as given when it has a '/', else searched in $PATH."""
    name = args[0]
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    if "/" in name:
        raise OCIError("process.args[0]: %s: no such executable file in the container" % name)
    raise OCIError("process.args[0]: executable file %r not found in $PATH (%s)"
                   % (name, env.get("PATH", DEFAULT_PATH)))


def keep_only_stdio_and_preserved(preserve_fds):
    """Mark every descriptor above the preserved ones close-on-exec; preserved ones inheritable."""
    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    try:
        syscalls.close_range(3 + preserve_fds, 0xFFFFFFFF, syscalls.CLOSE_RANGE_CLOEXEC)
    except OSError:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= 3 + preserve_fds:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass
