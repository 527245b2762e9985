"""process.terminal with real containers: the pty on the container's devpts, its master handed
to --console-socket, relayed by `ocirt run`, and logged by the monitor of `run --detach`.

The console socket protocol is runc's: the runtime connects to the unix socket
and sends one message whose data is the pty's name and whose SCM_RIGHTS
carries the master descriptor. The tests play the listening side (podman's
conmon) with a socket of their own.

Every read from a pty is bounded by a deadline (a hang detector, not a
measurement); nothing asserts on durations.
"""
import fcntl
import os
import re
import select
import socket
import struct
import subprocess
import time
import uuid

import pytest

from helpers import (
    HANG_SECONDS, OCIRT, WAIT_FOR_SIZE, WORDS_BY_ROOT, assert_error, assert_gone, cmdline,
    default_terminal_attributes, in_terminal, new_id, poll, resize, typing)

TIOCGWINSZ = 0x5413


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def read_until(fd, needle, what, seconds=HANG_SECONDS):
    """Read FD until NEEDLE shows up; return everything read."""
    deadline = time.monotonic() + seconds
    data = b""
    while True:
        if needle in data:
            return data
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail("gave up waiting for %s; read so far: %r" % (what, data))
        if select.select([fd], [], [], min(left, 1.0))[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""  # EIO: no slave side open any more
            if not chunk:
                pytest.fail("%s: the terminal closed first; read: %r" % (what, data))
            data += chunk


def terminal_config(console_size=None):
    process = {"terminal": True}
    if console_size:
        process["consoleSize"] = console_size
    return {"process": process}


class ConsoleSocket:
    """The listening side of --console-socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(HANG_SECONDS)

    def receive(self):
        """(data, [fds]) of the one message the runtime sends."""
        conn = self.sock.accept()[0]
        try:
            conn.settimeout(HANG_SECONDS)
            data, fds = socket.recv_fds(conn, 4096, 4)[:2]
            rest = conn.recv(4096)
        finally:
            conn.close()
        return data + rest, fds

    def close(self):
        self.sock.close()


class Consoles:
    """create --console-socket, with the master received by the test."""

    def __init__(self, ocirt, make_bundle, scratch):
        self.ocirt = ocirt
        self.make_bundle = make_bundle
        self.scratch = scratch
        self.opened = []

    def create(self, bundle, cid):
        """Create CID from BUNDLE with a console socket; return (pty name, master fd)."""
        server = ConsoleSocket(os.path.join(self.scratch, "console-%s.sock" % uuid.uuid4().hex[:6]))
        WORDS_BY_ROOT.setdefault(self.ocirt.root, set()).add(cid)
        out_path = os.path.join(self.scratch, "create-%s.out" % cid)
        try:
            with open(out_path, "w+") as out:
                proc = subprocess.Popen([OCIRT, "--root", self.ocirt.root, "create", "--bundle", bundle,
                                         "--console-socket", server.path, cid],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=out)
                try:
                    data, fds = server.receive()
                    code = proc.wait(timeout=HANG_SECONDS)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                out.seek(0)
                output = out.read()
        finally:
            server.close()
        self.opened.extend(fds)
        assert code == 0, "create --console-socket failed (%d): %s" % (code, output)
        assert len(fds) == 1, "expected exactly one descriptor, got %r" % fds
        return data.decode(), fds[0]

    def close(self):
        for fd in self.opened:
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def consoles(ocirt, make_bundle, scratch):
    helper = Consoles(ocirt, make_bundle, scratch)
    yield helper
    helper.close()


def run_in_terminal(ocirt, bundle, cid, size=None, steps=()):
    """`ocirt run` in a terminal of its own (see in_terminal); the container is force-deleted if it stays."""
    WORDS_BY_ROOT.setdefault(ocirt.root, set()).add(cid)
    try:
        return in_terminal([OCIRT, "--root", ocirt.root, "run", "--bundle", bundle, cid], size, steps)
    finally:
        if cid in ocirt.ids():
            ocirt("delete", "--force", cid, check=False)


# --------------------------------------------------------------------------
# 1. --console-socket
# --------------------------------------------------------------------------

def test_console_socket_gets_the_pty_name_and_its_master(consoles, ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "tty; ls -l /dev/console; echo END-OF-OUTPUT; exec sleep 1000"],
                         config=terminal_config())
    cid = new_id()
    name, master = consoles.create(bundle, cid)
    match = re.match(r"^/dev/pts/(\d+)$", name)
    assert match, "the message's data is not a pty name: %r" % name
    number = int(match.group(1))
    assert ocirt.state(cid)["status"] == "created"
    # The descriptor is a pty master: the container devpts's ptmx (5:2).
    st = os.fstat(master)
    assert os.isatty(master)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (5, 2), (os.major(st.st_rdev), os.minor(st.st_rdev))

    ocirt("start", cid)
    output = read_until(master, b"END-OF-OUTPUT", "the container's output").decode()
    # The master went to the socket only: the container's process holds its stdio (the slave) and nothing else.
    pid = ocirt.state(cid)["pid"]
    poll(lambda: cmdline(pid) == ["sleep", "1000"], "the shell to exec sleep")
    assert sorted(int(fd) for fd in os.listdir("/proc/%d/fd" % pid)) == [0, 1, 2]
    slaves = set(os.stat("/proc/%d/fd/%d" % (pid, fd)).st_rdev for fd in (0, 1, 2))
    assert [(os.major(dev), os.minor(dev)) for dev in slaves] == [(136, number)]
    lines = [line.strip() for line in output.splitlines()]
    assert name in lines, "tty did not print %s: %r" % (name, output)
    console = [line for line in lines if line.endswith("/dev/console")]
    assert console, output
    assert re.match(r"^c\S*\s+\d+\s+\S+\s+\S+\s+136,\s*%d\s" % number, console[0]), \
        "/dev/console is not the pty %s: %r" % (name, console[0])
    ocirt("delete", "--force", cid)


def test_input_written_to_the_master_reaches_an_interactive_shell(consoles, ocirt, make_bundle):
    bundle = make_bundle(["sh"], config=terminal_config())
    cid = new_id()
    master = consoles.create(bundle, cid)[1]
    ocirt("start", cid)
    os.write(master, b"echo hi-$((6*7))\n")
    # The echoed input line says $((6*7)); only the shell's answer says 42.
    read_until(master, b"hi-42", "the shell's answer")
    os.write(master, b"exit 5\n")
    poll(lambda: ocirt.state(cid)["status"] == "stopped", "the shell to exit")
    ocirt("delete", cid)
    assert_gone(ocirt, cid)


def test_console_size_is_the_terminal_size(consoles, ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo size=$(stty size)=; exec sleep 1000"],
                         config=terminal_config({"height": 30, "width": 100}))
    cid = new_id()
    master = consoles.create(bundle, cid)[1]
    rows, cols = struct.unpack("HHHH", fcntl.ioctl(master, TIOCGWINSZ, b"\0" * 8))[:2]
    assert (rows, cols) == (30, 100)
    ocirt("start", cid)
    read_until(master, b"size=30 100=", "stty size to print 30 100")
    ocirt("delete", "--force", cid)


def test_a_terminal_without_a_console_socket_is_refused(ocirt, make_bundle):
    cid = new_id()
    result = ocirt("create", "--bundle", make_bundle(["sh"], config=terminal_config()), cid, check=False)
    assert_error(result, "process.terminal", "console-socket")
    assert_gone(ocirt, cid)


def test_a_console_socket_without_a_terminal_is_refused(ocirt, make_bundle, scratch):
    server = ConsoleSocket(os.path.join(scratch, "unused.sock"))
    try:
        cid = new_id()
        result = ocirt("create", "--bundle", make_bundle(["sh"]), "--console-socket", server.path, cid,
                       check=False)
    finally:
        server.close()
    assert_error(result, "--console-socket", "terminal")
    assert_gone(ocirt, cid)


def test_a_console_socket_nobody_listens_on_fails_create_and_leaves_nothing(ocirt, make_bundle, scratch):
    path = os.path.join(scratch, "nobody.sock")
    cid = new_id()
    result = ocirt("create", "--bundle", make_bundle(["sh"], config=terminal_config()),
                   "--console-socket", path, cid, check=False, timeout=HANG_SECONDS)
    assert_error(result, "--console-socket", path)
    assert_gone(ocirt, cid)


# --------------------------------------------------------------------------
# 2. `ocirt run` relays
# --------------------------------------------------------------------------

def test_run_relays_the_terminal_and_returns_the_exit_code(ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "tty; [ -t 0 ] && echo stdin-is-a-tty; echo relayed-$((1+1)); exit 3"],
                         config=terminal_config())
    cid = new_id()
    code, output, after = run_in_terminal(ocirt, bundle, cid)
    text = output.decode("utf-8", "replace")
    assert code == 3, text
    assert "relayed-2" in text and "stdin-is-a-tty" in text, text
    assert re.search(r"^/dev/pts/\d+\r?$", text, re.M), text
    assert after == default_terminal_attributes(), "ocirt run left the caller's terminal changed (raw mode?)"
    assert_gone(ocirt, cid)


def test_run_relays_input_to_the_container(ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo ready-for-input; read line; echo got-$line; exit 4"],
                         config=terminal_config())
    cid = new_id()
    code, output, after = run_in_terminal(ocirt, bundle, cid, steps=[(b"ready-for-input", typing(b"abc\r"))])
    assert code == 4, output
    assert b"got-abc" in output, output
    assert after == default_terminal_attributes()
    assert_gone(ocirt, cid)


# Waits (bounded by the test's read deadline) until the terminal has ROWS COLUMNS, then says so.


def test_run_follows_the_callers_terminal_size(ocirt, make_bundle):
    """The caller's size reaches the container's pty, and so does a later change (SIGWINCH).

    Not asserted: that the very first instruction of the program sees it.
    `run` copies the size when it starts relaying, after the process is
    released, as runc does (runc run shows 0 0 there about half the time).
    """
    script = "; ".join([WAIT_FOR_SIZE % (41, 123, "initial-size-seen"), WAIT_FOR_SIZE % (50, 150, "new-size-seen"),
                        "exit 0"])
    bundle = make_bundle(["sh", "-c", script], config=terminal_config())
    cid = new_id()
    code, output = run_in_terminal(ocirt, bundle, cid, size=(41, 123),
                                   steps=[(b"initial-size-seen", resize(50, 150)), (b"new-size-seen", typing(b""))])[:2]
    assert code == 0, output
    assert_gone(ocirt, cid)


def test_run_of_a_terminal_container_without_a_terminal_of_its_own(ocirt, make_bundle):
    """stdin not a tty (here /dev/null): run still relays the container's pty to its stdout."""
    bundle = make_bundle(["sh", "-c", "[ -t 1 ] && echo out-is-a-tty; echo no-caller-tty; exit 6"],
                         config=terminal_config())
    cid = new_id()
    result = ocirt.run(bundle, cid, timeout=HANG_SECONDS)
    assert result.returncode == 6, result
    assert "out-is-a-tty" in result.stdout and "no-caller-tty" in result.stdout, result
    assert_gone(ocirt, cid)


# --------------------------------------------------------------------------
# 3. the monitor logs a terminal
# --------------------------------------------------------------------------

def test_a_monitored_terminal_container_logs_the_pty_output(ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo logged-$((2+3)); tty; exit 0"], config=terminal_config())
    cid = new_id()
    ocirt("run", "--detach", "--bundle", bundle, cid, timeout=HANG_SECONDS)
    try:
        waited = ocirt("wait", "--timeout", HANG_SECONDS, cid, check=False, timeout=HANG_SECONDS + 30)
        assert waited.stdout.strip() == "0", (waited.stdout, waited.stderr)
        state = ocirt.state(cid)
        with open(state["logPath"], "rb") as handle:
            log = handle.read()
        records = [line.split(b" ", 3) for line in log.split(b"\n") if line]
        texts = [record[3].rstrip(b"\r") for record in records if len(record) == 4 and record[1] == b"stdout"]
        assert b"logged-5" in texts, log
        assert any(re.match(rb"^/dev/pts/\d+$", text) for text in texts), log
        logs = ocirt("logs", cid)
        assert "logged-5" in logs.stdout, logs.stdout
    finally:
        ocirt("delete", "--force", cid, check=False)
    assert_gone(ocirt, cid)
