# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""process.terminal, process.consoleSize: a pseudo-terminal for the container, and what happens
to its master side.

The pty is made on the container's own devpts (its /dev/pts/ptmx, opened
inside the rootfs) and nowhere else: the config must mount a devpts at
/dev/pts (runc fails without one too), and the node opened must be the ptmx
of a devpts. Without that check the image's /dev/pts/ptmx, any device node
it likes, was opened as host root before the process was in its devices
cgroup. The slave side is obtained with TIOCGPTPEER from the
master rather than by opening /dev/pts/N by name, which a hostile image
could have replaced (CVE-2019-10152 class). The slave becomes the process's
controlling terminal, its fds 0-2 and /dev/console. The master goes to the
runtime, which sends it to --console-socket (as runc does: SCM_RIGHTS with
the pty's name as the message), relays it to its own terminal (`run`), or
hands it to the monitor, which logs it.
"""
import os
import stat
import struct
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux.paths import ensure_in_root, fd_path, open_in_root

MS_BIND = 4096
DEVPTS_SUPER_MAGIC = 0x1CD1
PTMX = (5, 2)


def check(mounts):
    """Refuse process.terminal, before anything exists, when MOUNTS put no devpts at /dev/pts."""
    for mount in mounts or []:
        if mount.get("type") == "devpts" and os.path.normpath(mount["destination"]) == "/dev/pts":
            return
    raise OCIError("process.terminal: needs a devpts mount at /dev/pts in mounts (the pty is made only on a "
                   "devpts the runtime mounted, never on the image's /dev/pts/ptmx)")


def _open_ptmx(rootfd):
    """The container's /dev/pts/ptmx, opened only once it is known to be a devpts's ptmx."""
    try:
        handle = open_in_root(rootfd, "/dev/pts/ptmx")  # O_PATH: looking opens no device
    except OSError as exc:
        raise OCIError("process.terminal: cannot open the container's /dev/pts/ptmx (a devpts mount "
                       "with newinstance is needed): %s" % exc.strerror)
    try:
        st = os.fstat(handle)
        if (syscalls.fstatfs_type(handle) != DEVPTS_SUPER_MAGIC or not stat.S_ISCHR(st.st_mode)
                or (os.major(st.st_rdev), os.minor(st.st_rdev)) != PTMX):
            raise OCIError("process.terminal: the container's /dev/pts/ptmx is not the ptmx of a devpts "
                           "(is a devpts mounted at /dev/pts, and not covered by a later mount?)")
        return os.open(fd_path(handle), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("process.terminal: cannot open the container's /dev/pts/ptmx: %s" % exc.strerror)
    finally:
        os.close(handle)


def open_pty(rootfd, console_size=None, console=True):
    """(master, slave) on the container's devpts; with CONSOLE the slave is also bound on /dev/console."""
    master = _open_ptmx(rootfd)
    try:
        syscalls.pty_unlock(master)
        slave = syscalls.pty_peer(master, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if console_size:
            set_size(slave, console_size.get("height", 0), console_size.get("width", 0))
        if console:
            target = ensure_in_root(rootfd, "/dev/console", directory=False, mode=0o600)
            try:
                syscalls.mount(fd_path(slave), fd_path(target), None, MS_BIND)
            finally:
                os.close(target)
    except OSError as exc:
        os.close(master)
        raise OCIError("process.terminal: cannot set up the pty: %s" % (exc.strerror or exc))
    return master, slave


def pty_name(master):
    return "/dev/pts/%d" % syscalls.pty_number(master)


def set_size(fd, height, width):
    syscalls.set_window_size(fd, struct.pack("HHHH", height, width, 0, 0))


def become_controlling(slave):
    """In the container's process (a session leader): the slave is its terminal and its stdio."""
    syscalls.set_controlling_terminal(slave)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def send_to_console_socket(path, master):
    """Give MASTER to whoever listens on PATH (podman's conmon, a test client), as runc does."""
    import socket
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
        client.sendmsg([pty_name(master).encode()],
                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
    except OSError as exc:
        raise OCIError("--console-socket %s: %s" % (path, exc.strerror))
    finally:
        client.close()


def relay(master, stdin=0, stdout=1):
    """`run` in the foreground: copy between our terminal (raw while it lasts) and the container's,
    until the container's side closes; window size changes follow."""
    import select
    import signal
    import termios
    import tty
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        try:
            syscalls.set_window_size(master, syscalls.get_window_size(stdin))
        except OSError:
            pass

    def resize(*_args):
        try:
            syscalls.set_window_size(master, syscalls.get_window_size(stdin))
        except OSError:
            pass
    previous = signal.signal(signal.SIGWINCH, resize) if saved is not None else None
    reading = [master, stdin]
    try:
        while master in reading:
            try:
                ready = select.select(reading, [], [])[0]
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""  # EIO: every slave side is closed
                if not data:
                    break
                _write_all(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    _write_all(master, data)
                else:
                    reading.remove(stdin)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous)
        sys.stdout.flush()


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
