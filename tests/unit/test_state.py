"""state: ids, process liveness, the per-container directory, its record and its lock."""
import calendar
import json
import os
import re
import subprocess
import sys
import time

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container
from helpers import COLLECTIONS, poll, proc_state

WAIT_LIMIT = 30.0  # seconds: an upper bound for waits on other processes, never asserted on


# -- ids --------------------------------------------------------------------------


@pytest.mark.parametrize("container_id", [
    "a", "web-1", "x.y_z", "A1", "a" * 1024, "a+b", "a.b", ".hidden-ish", "x-",
], ids=["a", "web-1", "x.y_z", "A1", "1024-bytes", "plus", "a.b", "leading-dot", "trailing-dash"])
def test_validate_id_accepts(container_id):
    assert state.validate_id(container_id) == container_id


@pytest.mark.parametrize("container_id,needle", [
    ("", "must not be empty"),
    ("a/b", "'a/b'"),
    ("/abs", "'/abs'"),
    ("..", "'..'"),
    (".", "'.'"),
    ("a..b", "'a..b'"),
    ("../x", "'../x'"),
    ("a\0b", repr("a\0b")),
    ("a" * 1025, "a" * 32),
    ("\u00e9" * 513, "\u00e9" * 32),  # 1026 bytes in UTF-8, only 513 characters
    (None, "must not be empty"),
    ("\u00e9" * 4, repr("\u00e9" * 4)),
    ("a\nb", repr("a\nb")),
    ("a b", "'a b'"),
    ("a,b", "'a,b'"),
], ids=["empty", "slash", "absolute", "dotdot", "dot", "inner-dotdot", "dotdot-slash", "nul", "1025-bytes",
        "1026-bytes-multibyte", "none", "non-ascii", "newline", "space", "comma"])
def test_validate_id_rejects(container_id, needle):
    with pytest.raises(OCIError) as caught:
        state.validate_id(container_id)
    message = str(caught.value)
    assert "container id" in message
    assert needle in message


@pytest.mark.parametrize("bad_id", ["..", "a/b", "", "a" * 1025])
def test_bad_id_creates_nothing(tmp_path, bad_id):
    root = str(tmp_path / "root")
    with pytest.raises(OCIError):
        Container.new(root, bad_id)
    with pytest.raises(OCIError):
        Container.open(root, bad_id)
    assert not os.path.exists(root)
    assert os.listdir(str(tmp_path)) == []


# -- process start times ------------------------------------------------------------


def test_process_start_time_of_self_is_stable():
    first = state.process_start_time(os.getpid())
    assert isinstance(first, int) and not isinstance(first, bool)
    assert first > 0
    assert state.process_start_time(os.getpid()) == first


def test_process_start_time_distinguishes_processes():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        theirs = state.process_start_time(child.pid)
        assert isinstance(theirs, int)
        assert theirs >= state.process_start_time(os.getpid())
    finally:
        child.stdin.close()
        child.wait(timeout=WAIT_LIMIT)
    assert state.process_start_time(child.pid) is None


def test_process_start_time_of_a_reaped_child_is_none():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert state.process_start_time(pid) is None


def test_process_start_time_of_a_zombie_is_none():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        poll(lambda: proc_state(pid) == "Z", "the child to become a zombie")
        assert state.process_start_time(pid) is None
    finally:
        os.waitpid(pid, 0)


def test_process_start_time_survives_a_hostile_command_name():
    """/proc/PID/stat's comm may hold ') Z (': the parser must split after the last ')'."""
    script = ("import sys\n"
              "sys.stdout.write('1\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
              "open('/proc/self/comm', 'w').write('a) Z 1 (b')\n"
              "sys.stdout.write('2\\n'); sys.stdout.flush(); sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             universal_newlines=True)
    try:
        assert child.stdout.readline() == "1\n"
        before = state.process_start_time(child.pid)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "2\n"
        with open("/proc/%d/comm" % child.pid) as handle:
            assert handle.read() == "a) Z 1 (b\n"
        assert isinstance(before, int)
        assert state.process_start_time(child.pid) == before
    finally:
        child.stdin.close()
        child.wait(timeout=WAIT_LIMIT)


# -- utc_now ------------------------------------------------------------------------

RFC3339_NANOS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z$")


def test_utc_now_format_and_zone():
    before = int(time.time())
    stamp = state.utc_now()
    after = int(time.time())
    match = RFC3339_NANOS.match(stamp)
    assert match, stamp
    fields = [int(value) for value in match.groups()[:6]]
    seconds = calendar.timegm(fields)  # UTC, not local time
    assert before <= seconds <= after


def test_utc_now_has_real_nanoseconds():
    stamps = set(state.utc_now() for index in range(20))
    assert all(RFC3339_NANOS.match(stamp) for stamp in stamps)
    assert len(set(stamp[20:29] for stamp in stamps)) > 1


# -- the container directory and its record ---------------------------------------------


RECORD = {"ociVersion": "1.0.2", "id": "c1", "status": "created", "pid": 0, "bundle": "/b",
          "rootfs": "/b/rootfs", "created": "2024-01-01T00:00:00.000000000Z", "annotations": {"k": "v"}}


def test_new_then_open_round_trip(tmp_path):
    root = str(tmp_path / "root")
    with Container.new(root, "c1") as container:
        container.write(RECORD)
        assert container.read() == RECORD
    assert os.path.isdir(os.path.join(root, "c1"))
    assert os.listdir(os.path.join(root, "c1")) == [state.STATE_FILE]  # no temp file left behind
    with open(os.path.join(root, "c1", state.STATE_FILE)) as handle:
        assert json.load(handle) == RECORD
    with Container.open(root, "c1") as container:
        assert container.read() == RECORD
        assert container.update(status="running", started="x")["status"] == "running"
    with Container.open(root, "c1") as container:
        record = container.read()
    assert record == dict(RECORD, status="running", started="x")
    assert state.container_ids(root) == ["c1"]


def test_new_twice_is_an_error(tmp_path):
    root = str(tmp_path / "root")
    with Container.new(root, "dup") as container:
        container.write(RECORD)
    with pytest.raises(OCIError) as caught:
        Container.new(root, "dup")
    assert "dup" in str(caught.value)
    assert "already exists" in str(caught.value)
    with Container.open(root, "dup") as container:
        assert container.read() == RECORD  # the first one is untouched


def test_open_unknown_id(tmp_path):
    root = str(tmp_path / "root")
    for where in (root, str(tmp_path)):
        with pytest.raises(OCIError) as caught:
            Container.open(where, "ghost")
        assert str(caught.value) == "container ghost: does not exist"


def test_open_refuses_a_symlinked_container_dir(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), str(root / "sneaky"))
    with pytest.raises((OCIError, OSError)):
        Container.open(str(root), "sneaky")


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b"{\"status\": \"run"],
                         ids=["garbage", "empty", "bad-utf", "truncated"])
def test_corrupt_state_file(tmp_path, content):
    root = str(tmp_path / "root")
    with Container.new(root, "broken") as container:
        container.write(RECORD)
    with open(os.path.join(root, "broken", state.STATE_FILE), "wb") as handle:
        handle.write(content)
    with Container.open(root, "broken") as container:
        with pytest.raises(OCIError) as caught:
            container.read()
    message = str(caught.value)
    assert "broken" in message
    assert "unreadable" in message
    assert "delete --force" in message


def test_missing_state_file(tmp_path):
    root = str(tmp_path / "root")
    Container.new(root, "half").close()
    with Container.open(root, "half") as container:
        with pytest.raises(OCIError) as caught:
            container.read()
    assert "half" in str(caught.value)
    assert "delete --force" in str(caught.value)


def test_remove(tmp_path):
    root = str(tmp_path / "root")
    with Container.new(root, "gone") as container:
        container.write(RECORD)
        with open(container.path(state.CONFIG_COPY), "w") as handle:
            handle.write("{}")
        os.mkfifo(container.path(state.EXEC_FIFO))
        container.remove()
    assert state.container_ids(root) == []
    with pytest.raises(OCIError, match="does not exist"):
        Container.open(root, "gone")


def test_container_ids_lists_only_container_directories(tmp_path):
    """Every id directory is listed (dot-names too); files and the runtime's own "=..." entries are not."""
    root = tmp_path / "root"
    for name in ("b", "a", ".hidden", "=monitor"):
        (root / name).mkdir(parents=True)
    (root / "file").write_text("x")
    assert state.container_ids(str(root)) == [".hidden", "a", "b"]
    assert state.container_ids(str(tmp_path / "missing")) == []


def test_ids_may_not_use_the_runtimes_own_prefix():
    with pytest.raises(OCIError) as caught:
        state.validate_id("=monitor")
    assert "=monitor" in str(caught.value)


# status from the record and /proc: (record changes, exec fifo present?, expected status)
ME = os.getpid()
STATUSES = [
    ({"status": "created", "pid": ME}, True, state.CREATED),
    ({"status": "created", "pid": ME}, False, state.RUNNING),
    ({"status": "running", "pid": ME}, False, state.RUNNING),
    ({"status": "running", "pid": ME, "pidStartTime": 1}, False, state.STOPPED),  # pid reused
    ({"status": "running", "pid": 0}, False, state.STOPPED),
    ({"status": "creating", "pid": ME}, True, state.CREATING),
    ({"status": "creating", "pid": 0}, True, state.STOPPED),
]


@pytest.mark.parametrize("changes,fifo,expected", STATUSES)
def test_status_follows_the_process(tmp_path, changes, fifo, expected):
    root = str(tmp_path / "root")
    record = dict(RECORD, pidStartTime=state.process_start_time(ME))
    record.update(changes)
    with Container.new(root, "c1") as container:
        container.write(record)
        if fifo:
            os.mkfifo(container.path(state.EXEC_FIFO))
    with Container.open(root, "c1") as container:
        assert container.status() == expected
        oci = container.oci_state()
    assert oci["status"] == expected
    assert oci["id"] == "c1"
    assert oci["pid"] == (0 if expected == state.STOPPED else ME)
    assert oci["annotations"] == {"k": "v"}


# -- the lock -----------------------------------------------------------------------

OPENER = r"""
import sys
sys.path.insert(0, sys.argv[4])
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
root, cid, order = sys.argv[1:4]
def note(text):
    with open(order, "a") as handle:
        handle.write(text + "\n")
note("B waits")
try:
    with Container.open(root, cid) as container:
        note("B holds the lock, status " + container.read()["status"])
except OCIError as exc:
    note("B failed: %s" % exc)
"""


def _blocked_flock_waiters(inode):
    """Pids waiting (the '->' lines of /proc/locks) for a flock on INODE."""
    waiters = []
    with open("/proc/locks") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK" \
                    and fields[6].rsplit(":", 1)[-1] == str(inode):
                waiters.append(int(fields[5]))
    return waiters


def _start_opener(root, cid, order):
    return subprocess.Popen([sys.executable, "-c", OPENER, root, cid, order, COLLECTIONS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def _lines(path):
    with open(path) as handle:
        return handle.read().splitlines()


@pytest.mark.parametrize("first_removes", [False, True], ids=["release", "delete-while-waiting"])
def test_second_opener_blocks_until_the_first_closes(tmp_path, first_removes):
    root = str(tmp_path / "root")
    order = str(tmp_path / "order")
    container = Container.new(root, "locked")
    opener = None
    try:
        container.write(dict(RECORD, status="created"))
        inode = os.stat(container.dir).st_ino
        opener = _start_opener(root, "locked", order)
        poll(lambda: opener.pid in _blocked_flock_waiters(inode) or opener.poll() is not None,
             "the second process to block on the container's lock")
        assert opener.poll() is None, opener.communicate()
        assert _lines(order) == ["B waits"]
        with open(order, "a") as handle:
            handle.write("A releases\n")
        if first_removes:
            container.remove()
        container.close()
        err = opener.communicate(timeout=WAIT_LIMIT)[1]
        assert opener.returncode == 0, err
    finally:
        container.close()
        if opener is not None and opener.poll() is None:
            opener.kill()
            opener.wait()
    if first_removes:
        assert _lines(order) == ["B waits", "A releases", "B failed: container locked: does not exist"]
    else:
        assert _lines(order) == ["B waits", "A releases", "B holds the lock, status created"]


def test_lock_is_per_container(tmp_path):
    root = str(tmp_path / "root")
    order = str(tmp_path / "order")
    Container.new(root, "other").close()
    with Container.open(root, "other") as other:
        other.write(dict(RECORD, status="running"))
    with Container.new(root, "held"):
        opener = _start_opener(root, "other", order)
        try:
            err = opener.communicate(timeout=WAIT_LIMIT)[1]
        finally:
            if opener.poll() is None:
                opener.kill()
                opener.wait()
        assert opener.returncode == 0, err
        assert _lines(order) == ["B waits", "B holds the lock, status running"]


# -- ids the checks accept must work on disk ---------------------------------------------


@pytest.mark.parametrize("container_id", [".dotted", "a" * 255, "x.y_z"], ids=["leading-dot", "255-bytes", "x.y_z"])
def test_every_created_container_is_listed(tmp_path, container_id):
    """An id that validate_id accepts must show in container_ids (what `ocirt list` shows)."""
    root = str(tmp_path / "root")
    state.validate_id(container_id)
    with Container.new(root, container_id) as container:
        container.write(dict(RECORD, id=container_id))
    assert state.container_ids(root) == [container_id]


@pytest.mark.parametrize("length", [201, 256, 1024])
def test_ids_longer_than_a_file_name_work(tmp_path, length):
    """validate_id allows 1024 bytes, a directory name only 255: long ids live under '=<sha256>'."""
    root = str(tmp_path / "root")
    container_id = "a" * length
    state.validate_id(container_id)
    with Container.new(root, container_id) as container:
        container.write(dict(RECORD, id=container_id))
        assert os.path.basename(container.dir).startswith("=")
    with Container.open(root, container_id) as container:
        assert container.read()["id"] == container_id
    assert state.container_ids(root) == [container_id]
    with pytest.raises(OCIError) as caught:
        Container.new(root, container_id)
    assert "already exists" in str(caught.value)
