# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A persistent network namespace: a new one, bind-mounted onto a file, as `ip netns add` makes them.

No config.json field is applied here; the file's path becomes the
container's linux.namespaces entry of type network (attachment.with_network).
The namespace outlives the process that made it because the bind mount
holds it; cni.release unmounts it. A short-lived child makes it, so that
the caller's own network namespace never changes.

The child also brings the namespace's `lo` up, as podman and containerd do
themselves: the loopback plugin would cost an exec on ADD and another on
DEL for the same one flag (its result, 127.0.0.1 and ::1, is never used).
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sh"  # struct ifreq as far as ifr_flags: the name, then the flags


def _loopback_up():
    """Set IFF_UP on lo in the caller's (new) network namespace: a socket made there, two ioctls."""
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def create(path):
    """A new network namespace bound at PATH (a file made for it); OCIError naming PATH when it cannot be."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
    os.close(fd)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read_end)
        try:
            syscalls.unshare(CLONE_NEWNET)
            _loopback_up()
            syscalls.mount("/proc/self/ns/net", path, None, MS_BIND)
        except OSError as exc:
            os.write(write_end, str(exc).encode("utf-8", "replace")[:1000])
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode("utf-8", "replace")
    _pid, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        os.unlink(path)
        raise OCIError("network namespace %s: %s" % (path, message or "could not be made"))


def bind(source, path):
    """Bind the namespace SOURCE (a /proc/PID/ns/net) at PATH again (drift.repair: its mount was removed)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
    try:
        syscalls.mount(source, path, None, MS_BIND)
    except OSError as exc:
        raise OCIError("network namespace %s: cannot bind %s there: %s" % (path, source, exc.strerror))
