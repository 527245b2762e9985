# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The conversation between the runtime and the processes it forks: each message by name, and
the channel that carries them (a socketpair, one JSON object per line, descriptors as SCM_RIGHTS).

create (operations/create.py, the runtime) with the intermediate process and the
container's first process ("init", setup/container_init.py), in this order:
  USERNS    intermediate -> runtime, only with a new user namespace: it has
            unshared; the runtime writes its uid_map and gid_map, then
  ACK       runtime -> intermediate: the maps are written; it takes root there
            and forks the init (pid and time namespaces apply to children).
  PID       intermediate -> runtime: the init's pid ("pid"); the intermediate exits.
            (No USERNS, ACK or PID when create forks the init itself:
            namespaces.forks_once.)
  GO        runtime -> init: its pid is recorded; carries the cgroup directories
            ("cgroups"), the state ("state", for hooks and a seccomp listener) and
            whether prestart/createRuntime hooks run ("runtime_hooks"). The cgroup
            is made before the fork and the init has its directories from the
            start: it makes its mounts (a cgroup mount binds them) at once, while
            the runtime records its pid, sends GO and puts it in its cgroups, and
            reads GO after them. With the systemd driver, which makes the cgroup
            only once the pid is known, the init waits for GO before its mounts.
            Then
  JOINED    runtime -> init: it is in its cgroups; it applies the kernel settings.
  MOUNTED   init -> runtime, only when prestart or createRuntime hooks exist:
            the runtime runs them in its own namespaces, then
  CONTINUE  runtime -> init: it runs createContainer hooks, switches root and
            starts finalize.py's sequence.
  READY     init -> runtime: set up (the pty's master travels with it); create
            records the container `created` and returns. The init blocks on the
            exec fifo.
start (operations/lifecycle.py) and the init, over the exec fifo: start opens it
for reading, which releases the init; the init runs the startContainer hooks and
writes FIFO_STARTED right before its exec, or FIFO_FAILED and a message, and exits.

exec (operations/container_exec.py) with the joiner and the process it forks:
  GO        runtime -> joiner: it is in the container's cgroups; it joins the
            container's namespaces and forks the process.
  PID       joiner -> runtime: the process's pid; the joiner exits.
  READY     process -> runtime, before or after PID: set up (a pty's master
            travels with it). Its exec then closes a status pipe; text before
            the end of that pipe is the exec's failure.

ERROR comes from any child instead of what the runtime expects ("message": the
failure); the child exits. The monitor (create_monitored) answers its caller
once, over a pipe: MONITOR_OK and the container's pid, or MONITOR_ERROR and the
failure.
"""
import os

# The C modules (built in): socket.py builds enums and struct.py is a wrapper, a few ms of every create.
import _socket as socket
import _struct as struct

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

USERNS = "userns"
ACK = "ack"
PID = "pid"
GO = "go"
JOINED = "joined"
MOUNTED = "mounted"
CONTINUE = "continue"
READY = "ready"
ERROR = "error"

FIFO_STARTED = b"0"
FIFO_FAILED = b"E"

MONITOR_OK = "ok "
MONITOR_ERROR = "error "


class Channel:
    def __init__(self, sock):
        self.sock = sock
        self._buffer = b""
        self._fds = []

    @classmethod
    def pair(cls):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(parent), cls(child)

    def fileno(self):
        return self.sock.fileno()

    def send(self, kind, fds=None, **fields):
        """Send a message; FDS (descriptors) travel with it as SCM_RIGHTS and arrive in its "fds".

        If the peer has gone, the reason it sent before going is raised (OCIError), not EPIPE.
        """
        try:
            self._send(kind, fds, fields)
        except (BrokenPipeError, ConnectionResetError):
            self.raise_peer_error()
            raise OCIError("the container process exited before it was set up")

    def send_ready(self, master):
        """READY, carrying the pty's MASTER when there is one. Ours is closed once
        sent: the runtime's copy is the one that goes to the console socket."""
        if master is None:
            self.send(READY)
            return
        self.send(READY, fds=[master])
        os.close(master)

    def raise_peer_error(self, timeout=0.5):
        """Raise the ERROR message the peer sent (or sends within TIMEOUT seconds), if any."""
        import select
        if not self._buffer and not select.select([self.sock], [], [], timeout)[0]:
            return
        try:
            message = self.recv()
        except OSError:
            return
        if message is not None and message.get("type") == ERROR:
            raise OCIError(message["message"])

    def _send(self, kind, fds, fields):
        fields["type"] = kind
        data = jsonio.dumps(fields).encode("utf-8") + b"\n"
        if fds:
            sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                               struct.pack("%di" % len(fds), *fds))])
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    def recv(self):
        """The next message, or None at end of file (the peer exited)."""
        while b"\n" not in self._buffer:
            # Room for SCM_MAX_FD (253) descriptors: an overlay root in a user namespace sends two per layer.
            chunk, ancillary, _flags, _address = self.sock.recvmsg(65536, socket.CMSG_SPACE(253 * 4))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    count = len(payload) // 4  # array.array would import collections: 2 ms
                    self._fds.extend(struct.unpack("%di" % count, payload[:count * 4]))
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = jsonio.loads(line)
        if self._fds:
            # Descriptors arrive with the first byte of the message they were sent with.
            message["fds"], self._fds = self._fds, []
        return message

    def expect(self, kind, what):
        """Receive a message of KIND; an ERROR message or EOF raises OCIError."""
        message = self.recv()
        if message is None:
            raise OCIError("%s: the container process exited before it was set up" % what)
        if message["type"] == ERROR:
            raise OCIError(message["message"])
        if message["type"] != kind:
            raise OCIError("%s: unexpected message %r from the container process" % (what, message))
        return message

    def close(self):
        self.sock.close()


def read_to_eof(fd):
    """All a pipe's reader gets until every writer has closed it: a status or result pipe from a forked
    process, whose message may be longer than one read returns."""
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def report_and_exit(channel, exc):
    """In a child: send the failure to the runtime, then leave without running Python's exit handlers."""
    if isinstance(exc, OCIError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = "%s" % (exc.strerror or exc) if not exc.filename else "%s: %s" % (exc.filename, exc.strerror)
    else:
        message = "%s: %s" % (type(exc).__name__, exc)
    try:
        channel.send(ERROR, message=message)
    except Exception:
        pass
    os._exit(1)
