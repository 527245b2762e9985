# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The socket between the runtime and the processes it forks during create.

One JSON object per line. The children report progress ("userns": write my
id maps; "pid": the container's pid; "ready"; "error") and wait for the
runtime's answers ("ack", "go").
"""
import os
import struct

# The C module: socket.py builds enums at import (a few ms of every create).
import _socket as socket

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


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

    def raise_peer_error(self, timeout=0.5):
        """Raise the 'error' message the peer sent (or sends within TIMEOUT seconds), if any."""
        import select
        if not self._buffer and not select.select([self.sock], [], [], timeout)[0]:
            return
        try:
            message = self.recv()
        except OSError:
            return
        if message is not None and message.get("type") == "error":
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
            chunk, ancillary, _flags, _address = self.sock.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
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
        """Receive a message of KIND; an 'error' message or EOF raises OCIError."""
        message = self.recv()
        if message is None:
            raise OCIError("%s: the container process exited before it was set up" % what)
        if message["type"] == "error":
            raise OCIError(message["message"])
        if message["type"] != kind:
            raise OCIError("%s: unexpected message %r from the container process" % (what, message))
        return message

    def close(self):
        self.sock.close()


def report_and_exit(channel, exc):
    """In a child: send the failure to the runtime, then leave without running Python's exit handlers."""
    if isinstance(exc, OCIError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = "%s" % (exc.strerror or exc) if not exc.filename else "%s: %s" % (exc.filename, exc.strerror)
    else:
        message = "%s: %s" % (type(exc).__name__, exc)
    try:
        channel.send("error", message=message)
    except Exception:
        pass
    os._exit(1)
