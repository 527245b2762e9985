"""Running a command on a terminal of its own, for the terminal and exec tests."""
import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time

import pytest

HANG_SECONDS = 60  # a hang detector, not a timing assertion
TIOCSWINSZ = 0x5414
TIOCGPTN = 0x80045430


def default_terminal_attributes():
    """The attributes every new pty starts with (what a caller's terminal must be left with here)."""
    master, slave = os.openpty()
    try:
        return termios.tcgetattr(slave)
    finally:
        os.close(master)
        os.close(slave)


def in_terminal(argv, size=None, steps=()):
    """Run ARGV as a session leader whose controlling terminal is a new pty (pty.fork), as in a shell.

    SIZE: (rows, columns) of that terminal. STEPS: [(needle, action)]: once
    NEEDLE has been read (after the previous one), ACTION(master) runs.
    Returns (exit code, output, the terminal's attributes after ARGV exited);
    fails if ARGV exits before every needle was read.
    """
    pid, master = pty.fork()
    if pid == 0:
        try:
            if size:
                fcntl.ioctl(0, TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    # The slave, held open here too, so that the terminal outlives ARGV for the checks after it.
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = os.open("/dev/pts/%d" % number, os.O_RDWR | os.O_NOCTTY)
    status = None
    output = b""
    pending = list(steps)
    position = 0
    try:
        deadline = time.monotonic() + HANG_SECONDS
        while status is None:
            if time.monotonic() > deadline:
                pytest.fail("%s did not return (waiting for %r); output so far: %r"
                            % (argv[3:], pending[0][0] if pending else "its exit", output))
            if select.select([master], [], [], 0.1)[0]:
                output += os.read(master, 65536)
            while pending and output.find(pending[0][0], position) >= 0:
                position = output.find(pending[0][0], position) + len(pending[0][0])
                pending.pop(0)[1](master)
            done, waited = os.waitpid(pid, os.WNOHANG)
            if done:
                status = waited
        while select.select([master], [], [], 0)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            output += chunk
        after = termios.tcgetattr(slave)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
        os.close(slave)
    assert not pending, "%s exited before %r was read; output: %r" % (argv[3:], pending[0][0], output)
    return os.waitstatus_to_exitcode(status), output, after
