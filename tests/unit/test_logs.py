"""Log records without containers: logs.py (reading, selecting, following) and monitor.py's writing side.

monitor.py is imported as a module of the collection here; the runtime runs
the same source in a fresh interpreter (create._monitor_module). Its
LogWriter runs a thread of its own: every wait on it is bounded (join or
Event timeouts act as hang detectors, never as measurements).
"""
import json
import os
import re
import threading
import time

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import cli
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import logs
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import monitor
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

HANG_SECONDS = 30.0
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")
ROTATION_NOTICE = re.compile(rb"\[monitor: log rotation removed (\d+) bytes of older output\]$")
DROP_NOTICE = re.compile(rb"\[monitor: the disk fell behind; (\d+) bytes of output were dropped here\]$")


def stamp(n):
    """A distinct, increasing timestamp for test record N."""
    return "2026-01-02T03:04:05.%09dZ" % n


def line(n, stream="stdout", kind="F", text=None):
    text = ("line%d" % n).encode() if text is None else text
    return b"%s %s %s %s\n" % (stamp(n).encode(), stream.encode(), kind.encode(), text)


def write(path, data, mode="wb"):
    with open(path, mode) as handle:
        handle.write(data)


def record_texts(records):
    return [r.text for r in records]


# --------------------------------------------------------------------------
# logs.parse_line
# --------------------------------------------------------------------------

def test_parse_line_full_record():
    record = logs.parse_line(b"2026-01-02T03:04:05.000000001Z stdout F hello world")
    assert (record.timestamp, record.stream, record.partial, record.text) == \
        ("2026-01-02T03:04:05.000000001Z", "stdout", False, b"hello world")


def test_parse_line_partial_record_keeps_spaces_and_bytes():
    record = logs.parse_line(b"2026-01-02T03:04:05.000000001Z stderr P  two  spaces \xff")
    assert (record.stream, record.partial, record.text) == ("stderr", True, b" two  spaces \xff")


def test_parse_line_empty_text():
    assert logs.parse_line(b"2026-01-02T03:04:05.000000001Z stdout F ").text == b""
    assert logs.parse_line(b"2026-01-02T03:04:05.000000001Z stdout F").text == b""


@pytest.mark.parametrize("raw", [
    b"", b"garbage", b"2026-01-02T03:04:05Z stdout", b"2026-01-02T03:04:05Z stdout X text",
    b"2026-01-02T03:04:05Z stdout f text", b"2026-01-02T03:04:05Z stdout FP text",
])
def test_parse_line_malformed(raw):
    assert logs.parse_line(raw) is None


# --------------------------------------------------------------------------
# logs.read_records, log_files
# --------------------------------------------------------------------------

def test_read_records_reads_rotated_files_oldest_first(tmp_path):
    path = str(tmp_path / "container.log")
    write(path + ".3", line(0))          # beyond max_files=3: not part of the log
    write(path + ".2", line(1) + line(2))
    write(path + ".1", line(3) + b"not a record\n\n" + line(4))
    write(path, line(5) + line(6, "stderr"))
    assert logs.log_files(path, 3) == [path + ".2", path + ".1", path]
    records = logs.read_records(path, 3)
    assert record_texts(records) == [b"line%d" % n for n in range(1, 7)]
    assert [r.stream for r in records] == ["stdout"] * 5 + ["stderr"]
    assert [r.timestamp for r in records] == [stamp(n) for n in range(1, 7)]


def test_read_records_skips_missing_files_and_defaults_to_the_live_file(tmp_path):
    path = str(tmp_path / "container.log")
    write(path + ".2", line(1))
    write(path, line(3))
    assert record_texts(logs.read_records(path, 3)) == [b"line1", b"line3"]
    assert record_texts(logs.read_records(path)) == [b"line3"]
    assert logs.read_records(str(tmp_path / "nothing.log"), 5) == []


# --------------------------------------------------------------------------
# logs.select_records, logs.render
# --------------------------------------------------------------------------

def sample_records():
    return [logs.parse_line(line(n)[:-1]) for n in range(1, 6)]


def test_select_records_tail():
    records = sample_records()
    assert record_texts(logs.select_records(records, tail=2)) == [b"line4", b"line5"]
    assert record_texts(logs.select_records(records, tail=1)) == [b"line5"]
    assert logs.select_records(records, tail=0) == []
    assert record_texts(logs.select_records(records, tail=99)) == [b"line%d" % n for n in range(1, 6)]
    assert logs.select_records(records) == records


def test_select_records_since_is_inclusive_and_combines_with_tail():
    records = sample_records()
    assert record_texts(logs.select_records(records, since=stamp(3))) == [b"line3", b"line4", b"line5"]
    assert logs.select_records(records, since=stamp(6)) == []
    assert record_texts(logs.select_records(records, since=stamp(2), tail=1)) == [b"line5"]
    assert record_texts(logs.select_records(records, since=stamp(4), tail=5)) == [b"line4", b"line5"]


def test_render_joins_partial_pieces_without_newline():
    records = [logs.parse_line(raw[:-1]) for raw in (
        line(1, kind="P", text=b"ab"), line(2, kind="P", text=b"cd"), line(3, text=b"ef"),
        line(4, "stderr", text=b"err"), line(5, kind="P", text=b"end"))]
    pieces = logs.render(records)
    assert [piece[0] for piece in pieces] == ["stdout", "stdout", "stdout", "stderr", "stdout"]
    assert b"".join(data for stream, data in pieces if stream == "stdout") == b"abcdef\nend"
    assert b"".join(data for stream, data in pieces if stream == "stderr") == b"err\n"


def test_render_with_timestamps():
    records = [logs.parse_line(line(1)[:-1]), logs.parse_line(line(2, kind="P", text=b"x")[:-1])]
    assert logs.render(records, timestamps=True) == [
        ("stdout", stamp(1).encode() + b" line1\n"), ("stdout", stamp(2).encode() + b" x")]


# --------------------------------------------------------------------------
# logs.parse_since
# --------------------------------------------------------------------------

NOW = 1767323045.5  # 2026-01-02T03:04:05.5Z


@pytest.mark.parametrize("value,expected", [
    ("90s", "2026-01-02T03:02:35.500000000Z"),
    ("10m", "2026-01-02T02:54:05.500000000Z"),
    ("2h", "2026-01-02T01:04:05.500000000Z"),
    ("0s", "2026-01-02T03:04:05.500000000Z"),
])
def test_parse_since_durations(value, expected):
    assert logs.parse_since(value, now=NOW) == expected


@pytest.mark.parametrize("value,expected", [
    ("2026-01-02T03:04:05.5Z", "2026-01-02T03:04:05.500000000Z"),
    ("2026-01-02T03:04:05.123Z", "2026-01-02T03:04:05.123000000Z"),
    ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000000000Z"),
    ("2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05.123456789Z"),
])
def test_parse_since_rfc3339_normalizes_to_nine_digits(value, expected):
    assert logs.parse_since(value, now=NOW) == expected
    assert STAMP.match(logs.parse_since(value))


def test_parse_since_normalized_times_compare_as_strings():
    # Without normalization ".5Z" would sort after ".123456789Z" only by accident of the digits.
    assert logs.parse_since("2026-01-02T03:04:05.5Z") > "2026-01-02T03:04:05.123456789Z"
    assert logs.parse_since("2026-01-02T03:04:05.05Z") < "2026-01-02T03:04:05.123456789Z"


@pytest.mark.parametrize("value", [
    "", "yesterday", "10d", "-5s", "s", "1.5h", "2026-01-02", "2026-01-02T03:04:05+01:00",
    "2026-01-02T03:04:05.5+00:00",
])
def test_parse_since_rejects(value):
    with pytest.raises(OCIError) as info:
        logs.parse_since(value, now=NOW)
    assert "--since" in str(info.value)


# --------------------------------------------------------------------------
# logs.follow
# --------------------------------------------------------------------------

def test_follow_starts_at_the_offset_and_stops_when_not_running(tmp_path):
    path = str(tmp_path / "container.log")
    write(path, line(1) + line(2))
    offset = os.path.getsize(path)
    write(path, line(3) + line(4), "ab")
    assert record_texts(logs.follow(path, offset, lambda: False, interval=0.001)) == [b"line3", b"line4"]


def test_follow_waits_for_a_record_completed_later(tmp_path):
    path = str(tmp_path / "container.log")
    whole = line(1)
    write(path, whole[:10])
    calls = []

    def still_running():
        calls.append(1)
        if len(calls) == 2:
            write(path, whole[10:], "ab")   # the rest of the record arrives later
        return len(calls) < 4
    assert record_texts(logs.follow(path, 0, still_running, interval=0.001)) == [b"line1"]


def test_follow_across_a_rotation_loses_nothing(tmp_path):
    """Records appended to the old file just before it is rotated are still yielded.

    Deterministic: still_running(), called once per poll, plays the monitor.
    Between two polls the monitor appends 4-6 to the live file, then rotates
    it (rename to .1) and starts a new one with 7-9.
    """
    path = str(tmp_path / "container.log")
    write(path, b"")
    calls = []

    def still_running():
        calls.append(1)
        if len(calls) == 1:
            write(path, line(1) + line(2) + line(3), "ab")
        elif len(calls) == 2:
            write(path, line(4) + line(5) + line(6), "ab")
            os.rename(path, path + ".1")
            write(path, line(7) + line(8) + line(9))
        return len(calls) < 4
    got = record_texts(logs.follow(path, 0, still_running, interval=0.001))
    assert got == [b"line%d" % n for n in range(1, 10)], got


def test_follow_with_a_writer_thread_and_one_rotation(tmp_path):
    """A thread appends 200 records, rotating (rename + recreate) after the 100th.

    follow must yield each record exactly once, in order, and stop once the
    thread is done (still_running is false) and everything is read.
    """
    path = str(tmp_path / "container.log")
    write(path, b"")
    errors = []

    def writer():
        try:
            for n in range(200):
                write(path, line(n), "ab")
                if n == 99:
                    os.rename(path, path + ".1")
                    write(path, b"")
                time.sleep(0.001)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    thread = threading.Thread(target=writer)
    thread.start()
    got = []
    try:
        for record in logs.follow(path, 0, thread.is_alive, interval=0.005):
            got.append(record.text)
            assert len(got) <= 200, "more records than were written"
    finally:
        thread.join(HANG_SECONDS)
    assert not errors
    expected = [b"line%d" % n for n in range(200)]
    missing = sorted(set(expected) - set(got), key=lambda t: int(t[4:]))
    assert got == expected, "missing %s" % missing


def test_cli_logs_follow_prints_each_record_once(tmp_path, monkeypatch):
    """`ocirt logs --follow`: a record the monitor appends while the log is first read
    is printed once, not by both the first read and the follow.

    The monitor appends a record right before the first read and another right
    after it, before the follow starts: each must be printed exactly once.
    """
    path = str(tmp_path / "container.log")
    write(path, line(1))
    monkeypatch.setattr(lifecycle, "log_source", lambda root, cid: (path, 1, lambda: False))
    original = logs.read_records_and_offset

    def read_while_the_monitor_writes(*args, **kwargs):
        write(path, line(2), "ab")
        try:
            return original(*args, **kwargs)
        finally:
            write(path, line(3), "ab")
    monkeypatch.setattr(logs, "read_records_and_offset", read_while_the_monitor_writes)
    printed = []
    monkeypatch.setattr(cli, "_write_pieces", printed.extend)
    cli._print_logs(str(tmp_path), {"id": "c", "follow": True})
    assert printed == [("stdout", b"line1\n"), ("stdout", b"line2\n"), ("stdout", b"line3\n")]


# --------------------------------------------------------------------------
# monitor.timestamp, monitor.Stream
# --------------------------------------------------------------------------

def test_timestamp_format():
    assert monitor.timestamp(1767323045 * 10 ** 9 + 123456789) == "2026-01-02T03:04:05.123456789Z"
    assert monitor.timestamp(1767323045 * 10 ** 9 + 5) == "2026-01-02T03:04:05.000000005Z"
    assert STAMP.match(monitor.timestamp())


def output_bytes(record):
    """How many bytes of the container's output a log record carries (a P piece has no newline)."""
    parsed = logs.parse_line(record[:-1])
    return len(parsed.text) + (0 if parsed.partial else 1)


def plain(item):
    """A record as Stream gives it: bytes, or (bytes, output bytes it carries), checked."""
    if isinstance(item, tuple):
        record, count = item
        assert count == output_bytes(record), item
        return record
    return item


# Stream.records gives (record, output bytes) pairs and LogWriter.put takes a list of
# them (so that a drop can be counted in bytes of output); earlier, single records.
PAIRS = isinstance(monitor.Stream(-1, "stdout").records(b"x\n")[0], tuple)


def put(writer, records):
    if PAIRS:
        writer.put([(record, output_bytes(record)) for record in records])
    else:
        for record in records:
            writer.put(record)


def split_record(raw):
    raw = plain(raw)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw
    stamp_text, stream, kind, text = raw[:-1].split(b" ", 3)
    assert STAMP.match(stamp_text.decode()), raw
    return stream, kind, text


def test_stream_full_lines_are_f_records():
    stream = monitor.Stream(5, "stdout")
    records = stream.records(b"one\ntwo words\n\n")
    assert [split_record(r) for r in records] == [
        (b"stdout", b"F", b"one"), (b"stdout", b"F", b"two words"), (b"stdout", b"F", b"")]
    assert stream.flush() == []


def test_stream_joins_a_line_split_across_reads():
    stream = monitor.Stream(5, "stderr")
    assert stream.records(b"hal") == []
    assert stream.records(b"f a li") == []
    assert [split_record(r) for r in stream.records(b"ne\nnext")] == [(b"stderr", b"F", b"half a line")]
    assert [split_record(r) for r in stream.flush()] == [(b"stderr", b"P", b"next")]
    assert stream.flush() == []


def test_stream_cuts_an_unfinished_long_line_into_16k_p_pieces():
    size = monitor.PARTIAL_LINE
    assert size == 16 << 10
    stream = monitor.Stream(5, "stdout")
    records = [split_record(r) for r in stream.records(b"a" * (2 * size + 100))]
    assert records == [(b"stdout", b"P", b"a" * size)] * 2
    records = [split_record(r) for r in stream.records(b"b\n")]
    assert records == [(b"stdout", b"F", b"a" * 100 + b"b")]


def test_stream_cuts_a_long_line_read_whole_into_p_pieces():
    """A line longer than PARTIAL_LINE "is logged in P(artial) pieces" (monitor.py),
    also when the whole line, newline included, comes in one read."""
    size = monitor.PARTIAL_LINE
    stream = monitor.Stream(5, "stdout")
    records = [split_record(r) for r in stream.records(b"x" * (2 * size + 100) + b"\n")]
    assert all(len(text) <= size for _s, _k, text in records), [(k, len(t)) for _s, k, t in records]
    assert [kind for _s, kind, _t in records] == [b"P", b"P", b"F"]
    assert b"".join(text for _s, _k, text in records) == b"x" * (2 * size + 100)


def test_stream_records_render_back_to_the_output():
    stream = monitor.Stream(5, "stdout")
    output = b"first\n" + b"y" * 40000 + b"\nlast without newline"
    raw = []
    for start in range(0, len(output), 7000):
        raw.extend(plain(item) for item in stream.records(output[start:start + 7000]))
    raw.extend(plain(item) for item in stream.flush())
    records = [logs.parse_line(r[:-1]) for r in raw]
    assert b"".join(data for _stream, data in logs.render(records)) == output


# --------------------------------------------------------------------------
# monitor.LogWriter
# --------------------------------------------------------------------------

def fixed_record(n, size=52):
    """A record of exactly SIZE bytes."""
    head = b"%s stdout F " % stamp(n).encode()
    body = (b"r%d-" % n).ljust(size - len(head) - 1, b"x")
    record = head + body + b"\n"
    assert len(record) == size
    return record


def write_all(path, records, max_size, max_files):
    writer = monitor.LogWriter(path, max_size, max_files)
    put(writer, records)
    closer = threading.Thread(target=writer.close)
    closer.start()
    closer.join(HANG_SECONDS)
    assert not closer.is_alive(), "LogWriter.close did not return"


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_log_writer_appends_in_order_without_rotation(tmp_path):
    path = str(tmp_path / "container.log")
    records = [fixed_record(n) for n in range(1000)]
    write_all(path, records, 0, 3)
    assert read(path) == b"".join(records)
    assert not os.path.exists(path + ".1")


def test_log_writer_rotates_and_says_how_much_it_removed(tmp_path):
    path = str(tmp_path / "container.log")
    r = [None] + [fixed_record(n) for n in range(1, 6)]
    # 52-byte records, 120 bytes, 2 files: r1 r2 | rotate (nothing to remove): r3 r4 |
    # rotate, removing r1 r2 (104 bytes): notice r5
    write_all(path, r[1:], 120, 2)
    assert read(path + ".1") == r[3] + r[4]
    live = read(path).split(b"\n")[:-1]
    assert len(live) == 2
    notice = logs.parse_line(live[0])
    assert notice.stream == "stderr" and not notice.partial
    assert ROTATION_NOTICE.match(notice.text).group(1) == b"104"
    assert live[1] + b"\n" == r[5]
    assert not os.path.exists(path + ".2")


def test_log_writer_with_one_file_truncates_and_says_so(tmp_path):
    path = str(tmp_path / "container.log")
    r = [fixed_record(n) for n in range(1, 4)]
    write_all(path, r, 120, 1)
    live = read(path).split(b"\n")[:-1]
    assert len(live) == 2
    assert ROTATION_NOTICE.match(logs.parse_line(live[0]).text).group(1) == b"104"
    assert live[1] + b"\n" == r[2]
    assert not os.path.exists(path + ".1")


def test_log_writer_rotation_keeps_a_contiguous_suffix(tmp_path):
    path = str(tmp_path / "container.log")
    max_size = 4096
    records = [line(n) for n in range(1, 2001)]
    write_all(path, records, max_size, 3)
    assert not os.path.exists(path + ".3")
    longest = max(len(r) for r in records) + 100  # a rotation notice is about that long
    for name in (path + ".2", path + ".1", path):
        assert os.path.getsize(name) <= max_size + longest, name
    kept = logs.read_records(path, 3)
    numbers = [int(r.text[4:]) for r in kept if r.stream == "stdout"]
    assert numbers == list(range(numbers[0], 2001)), numbers
    assert numbers[0] > 1
    notices = [ROTATION_NOTICE.match(r.text) for r in kept if r.stream == "stderr"]
    assert notices and all(notices)
    assert all(0 < int(m.group(1)) <= max_size + longest for m in notices)
    # The notice opens the live file, the file rotation started.
    assert logs.read_records(path, 1)[0].stream == "stderr"


class BlockedWriter:
    """A LogWriter whose first disk write waits until released: the disk "falls behind"."""

    def __init__(self, path, monkeypatch, backlog):
        monkeypatch.setattr(monitor, "MAX_BACKLOG", backlog)
        self.writer = monitor.LogWriter(path, 0, 1)
        self.entered = threading.Event()
        self.release = threading.Event()
        original = self.writer._write

        def slow_write(record):
            self.entered.set()
            assert self.release.wait(HANG_SECONDS), "never released"
            original(record)
        self.writer._write = slow_write

    def close(self):
        self.release.set()
        closer = threading.Thread(target=self.writer.close)
        closer.start()
        closer.join(HANG_SECONDS)
        assert not closer.is_alive(), "LogWriter.close did not return"


def overflow(tmp_path, monkeypatch):
    """Records 0..9 (52 bytes each, output 'rN-xx...' of 11 bytes + newline) with room for 3 waiting.

    0 is being written (blocked), 1-3 wait in the backlog, 4-9 overflow it.
    """
    path = str(tmp_path / "container.log")
    blocked = BlockedWriter(path, monkeypatch, 3 * 52)
    records = [fixed_record(n) for n in range(10)]
    put(blocked.writer, records[:1])
    assert blocked.entered.wait(HANG_SECONDS), "the writer thread never started writing"
    for record in records[1:]:
        put(blocked.writer, [record])
    blocked.close()
    return path, records


def test_log_writer_overflow_keeps_what_fit_and_records_the_drop(tmp_path, monkeypatch):
    path, records = overflow(tmp_path, monkeypatch)
    lines = read(path).split(b"\n")[:-1]
    kept = [raw + b"\n" for raw in lines if b" stdout " in raw]
    assert kept == records[:4]
    notices = [logs.parse_line(raw) for raw in lines if b" stderr " in raw]
    assert len(notices) == 1 and DROP_NOTICE.match(notices[0].text), lines


def test_log_writer_drop_notice_comes_where_the_output_was_dropped(tmp_path, monkeypatch):
    """Records 1-3 were accepted before 4-9 were dropped: the notice belongs after 3."""
    path, _records = overflow(tmp_path, monkeypatch)
    texts = [logs.parse_line(raw).text[:3] for raw in read(path).split(b"\n")[:-1]]
    assert texts == [b"r0-", b"r1-", b"r2-", b"r3-", b"[mo"], texts


def test_log_writer_drop_notice_counts_bytes_of_output(tmp_path, monkeypatch):
    """The notice says "N bytes of output were dropped": N is the container's output
    (text and newline: 12 bytes for each of records 4-9), not the size of the log
    records that would have held it."""
    path, records = overflow(tmp_path, monkeypatch)
    notice = [logs.parse_line(raw) for raw in read(path).split(b"\n")[:-1] if b" stderr " in raw][0]
    output_bytes = sum(len(logs.parse_line(r[:-1]).text) + 1 for r in records[4:])
    assert output_bytes == 6 * 12
    assert int(DROP_NOTICE.match(notice.text).group(1)) == output_bytes, notice.text


# --------------------------------------------------------------------------
# monitor.exit_record, write_json, oom_kills
# --------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_record_for_an_exit(code):
    record = monitor.exit_record(code << 8, None, "")
    assert record["exitCode"] == code
    assert record["signal"] is None
    assert record["oomKilled"] is False
    assert STAMP.match(record["finished"])


@pytest.mark.parametrize("status,code,name", [
    (9, 137, "SIGKILL"), (15, 143, "SIGTERM"), (2, 130, "SIGINT"),
    (6 | 0x80, 134, "SIGABRT"),   # with the core-dump flag
    (11 | 0x80, 139, "SIGSEGV"),
])
def test_exit_record_for_a_signal(status, code, name):
    record = monitor.exit_record(status, None, "")
    assert (record["exitCode"], record["signal"], record["oomKilled"]) == (code, name, False)


def oom_control(tmp_path, kills, name="memory.oom_control"):
    path = tmp_path / name
    path.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n" % kills)
    return str(path)


def test_oom_kills_reads_v1_and_v2_files(tmp_path):
    assert monitor.oom_kills(oom_control(tmp_path, 3)) == 3
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 12\noom 4\noom_kill 2\noom_group_kill 0\n")
    assert monitor.oom_kills(str(events)) == 2


def test_oom_kills_without_a_counter(tmp_path):
    assert monitor.oom_kills("") is None
    assert monitor.oom_kills(None) is None
    assert monitor.oom_kills(str(tmp_path / "missing")) is None
    old = tmp_path / "old"
    old.write_text("oom_kill_disable 0\nunder_oom 0\n")
    assert monitor.oom_kills(str(old)) is None
    bad = tmp_path / "bad"
    bad.write_text("oom_kill many\n")
    assert monitor.oom_kills(str(bad)) is None


def test_exit_record_oom_killed_when_the_counter_grew(tmp_path):
    path = oom_control(tmp_path, 1)
    assert monitor.exit_record(9, 0, path)["oomKilled"] is True
    assert monitor.exit_record(9, 1, path)["oomKilled"] is False
    assert monitor.exit_record(9, None, path)["oomKilled"] is False
    assert monitor.exit_record(9, 0, str(tmp_path / "missing"))["oomKilled"] is False


def test_write_json_writes_json(tmp_path):
    record = {"exitCode": 137, "signal": "SIGKILL", "oomKilled": True, "finished": 'a "quoted" \\ time',
              "output": "line\n\ttab \x01 \u00e9", "times": ["a", "b"], "nested": {"n": None, "f": 1.5}}
    monitor.write_json(str(tmp_path), monitor.EXIT_FILE, record)
    with open(str(tmp_path / monitor.EXIT_FILE)) as handle:
        assert json.load(handle) == record
    assert os.listdir(str(tmp_path)) == [monitor.EXIT_FILE]
    monitor.write_json(str(tmp_path / "deleted"), monitor.EXIT_FILE, record)  # a removed state dir is not an error  # a removed state dir is not an error
