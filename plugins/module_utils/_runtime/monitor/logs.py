# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a monitored container's log: `ocirt logs`, and the log tail in module results.

The monitor writes `TIMESTAMP STREAM F|P TEXT` records (monitor.py) to the
log and its rotated predecessors log.1, log.2, ... (oldest last).
"""
import os
import time

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


class Record:
    __slots__ = ("timestamp", "stream", "partial", "text")

    def __init__(self, timestamp, stream, partial, text):
        self.timestamp = timestamp
        self.stream = stream
        self.partial = partial
        self.text = text


def parse_line(line):
    """A Record from one log line (bytes, without its newline), or None for a malformed one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    return Record(parts[0].decode("ascii", "replace"), parts[1].decode("ascii", "replace"),
                  parts[2] == b"P", parts[3] if len(parts) == 4 else b"")


def log_files(path, max_files):
    """The log's files, oldest first."""
    files = ["%s.%d" % (path, index) for index in range(max(max_files, 1) - 1, 0, -1)]
    files.append(path)
    return [f for f in files if os.path.exists(f)]


def read_records(path, max_files=1):
    return read_records_and_offset(path, max_files)[0]


def read_records_and_offset(path, max_files=1):
    """The records of every file of the log, and how many bytes of the live file were read.

    The offset is where `follow` must start so that no record is printed
    twice or missed, whatever the monitor writes meanwhile: a record the
    monitor is still writing (no newline yet) is left for `follow`.

    The monitor may rotate the log (log.1 -> log.2, log -> log.1, a new log)
    at any moment. The files are opened newest first and read only once all
    are open: a rotation among the opens shifts a file to the name opened
    next (read once, by its inode), and one after them changes nothing that
    was opened; only a rotation during the opens that renamed the live file
    (its inode changed) makes the picture doubtful, and the opens start again.
    """
    for attempt in range(READ_ATTEMPTS):
        before = _inode(path)
        handles = _open_newest_first(path, max_files)
        try:
            if _inode(path) == before or attempt == READ_ATTEMPTS - 1:
                return _read_oldest_first(handles, path)
        finally:
            for dummy, handle in handles:
                handle.close()
    raise AssertionError("unreachable")


READ_ATTEMPTS = 5  # a monitor rotating during every attempt's few opens writes faster than anyone can read


def _inode(path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _open_newest_first(path, max_files):
    handles = []
    inodes = set()
    for name in reversed(log_files(path, max_files)):
        try:
            handle = open(name, "rb")
        except FileNotFoundError:
            continue  # rotated away since log_files listed it
        inode = os.fstat(handle.fileno()).st_ino
        if inode in inodes:
            handle.close()  # the rotation moved a file already open to this name
            continue
        inodes.add(inode)
        handles.append((name, handle))
    return handles


def _read_oldest_first(handles, path):
    records = []
    offset = 0
    for name, handle in reversed(handles):
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if name == path:
            offset = end
        for line in data[:end].split(b"\n"):
            record = parse_line(line) if line else None
            if record is not None:
                records.append(record)
    return records, offset


def parse_since(value, now=None):
    """An RFC 3339 timestamp string, or a duration before NOW ('90s', '10m', '2h'), as RFC 3339."""
    units = {"s": 1, "m": 60, "h": 3600}
    if value and value[-1] in units and value[:-1].isdigit():
        seconds = (now if now is not None else time.time()) - int(value[:-1]) * units[value[-1]]
        whole = int(seconds)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + ".%09dZ" % int((seconds - whole) * 1e9)
    if len(value) >= 20 and value[4] == "-" and value[10] == "T":
        return _normalize(value)
    raise OCIError("--since %s: give an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (30s, 10m, 2h)"
                   % value)


def _normalize(stamp):
    """Timestamps compare as strings once their fraction has nine digits."""
    if not stamp.endswith("Z"):
        raise OCIError("--since %s: give the time in UTC, ending in Z" % stamp)
    body = stamp[:-1]
    whole, _dot, fraction = body.partition(".")
    return "%s.%sZ" % (whole, (fraction + "000000000")[:9])


def select_records(records, tail=None, since=None):
    if since is not None:
        records = [r for r in records if r.timestamp >= since]
    if tail is not None:
        records = records[-tail:] if tail > 0 else []
    return records


def render(records, timestamps=False):
    """(stream, bytes) pieces that reproduce the output; P records continue their line."""
    pieces = []
    for record in records:
        text = record.text if record.partial else record.text + b"\n"
        if timestamps:
            text = record.timestamp.encode() + b" " + text
        pieces.append((record.stream, text))
    return pieces


def follow(path, start_offset, still_running, interval=0.1):
    """Yield records appended to PATH after START_OFFSET until STILL_RUNNING() is false and all is read.

    A rotation (the file renamed away and a new one made) is followed: the
    old file is read to its end first, then the new one from its start.
    """
    handle = None
    buffer = b""
    try:
        while True:
            running = still_running()
            if handle is None:
                try:
                    handle = open(path, "rb")
                    handle.seek(start_offset)
                except FileNotFoundError:
                    handle = None
            data = handle.read() if handle is not None else b""
            if not data and handle is not None:
                try:
                    replaced = os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
                except FileNotFoundError:
                    replaced = False
                if replaced:
                    handle.close()
                    handle = None
                    start_offset = 0
                    continue
            if data:
                buffer += data
                lines = buffer.split(b"\n")
                buffer = lines.pop()
                for line in lines:
                    record = parse_line(line)
                    if record is not None:
                        yield record
                continue
            if not running:
                return
            time.sleep(interval)
    finally:
        if handle is not None:
            handle.close()
