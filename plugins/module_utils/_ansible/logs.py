# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's log in module results: oci_container_info's logs_tail and logs_since.

The log is read as `ocirt logs` reads it (lifecycle.log_source, then the
monitor's reader in _runtime/monitor/logs.py, which copes with rotation
during the read and with a record still being written). Here the records
become lines: the monitor cuts a long line into P(artial) pieces, which are
joined again per stream, and what a task gets back is capped, since the
container's output is whatever its process chose to print.
"""
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle

LINE_MAX = 16 << 10  # bytes of one line returned; the rest is cut and said so
TEXT_MAX = 1 << 20   # bytes of text returned per container; the newest lines are kept
TAIL_MAX = 10000


def validate(tail, since):
    """(tail, since as the reader compares it); OCIError naming logs_tail or logs_since."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import logs
    if tail is not None and not 0 <= tail <= TAIL_MAX:
        raise OCIError("logs_tail: must be 0 to %d, not %d" % (TAIL_MAX, tail))
    if since is None or since == "":
        return tail, None
    try:
        return tail, logs.parse_since(since)
    except (OCIError, ValueError, IndexError) as exc:
        raise OCIError("logs_since: %s" % str(exc).replace("--since ", "", 1))


def lines(records):
    """[{stream, time, text}] from log records: a line's P pieces joined to its F piece, per stream,
    cut at LINE_MAX bytes; a last piece with no F after it (output with no newline yet) is a line too."""
    result = []
    pending = {}  # stream -> [time of the first piece, bytes kept, bytes cut]

    def finish(stream, piece):
        stamp, kept, cut = pending.pop(stream, None) or [piece.timestamp, b"", 0]
        room = LINE_MAX - len(kept)
        kept, cut = kept + piece.text[:max(room, 0)], cut + max(len(piece.text) - max(room, 0), 0)
        return stamp, kept, cut

    for record in records:
        stamp, kept, cut = finish(record.stream, record)
        if record.partial:
            pending[record.stream] = [stamp, kept, cut]
            continue
        result.append(_line(record.stream, stamp, kept, cut))
    for stream in sorted(pending, key=lambda s: pending[s][0]):
        stamp, kept, cut = pending[stream]
        result.append(_line(stream, stamp, kept, cut))
    result.sort(key=lambda line: line["time"])
    return result


def _line(stream, stamp, kept, cut):
    text = kept.decode("utf-8", "replace")
    if cut:
        text += " [... %d more bytes cut]" % cut
    return dict(stream=stream, time=stamp, text=text)


def container_logs(root, container_id, tail=None, since=None):
    """(the last TAIL lines since SINCE (all when None) as [{stream, time, text}], whether TEXT_MAX cut older ones).

    A container created without a monitor has no log: ([], False). TAIL and
    SINCE must have passed validate().
    """
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import logs
    try:
        path, max_files, dummy = lifecycle.log_source(root, container_id)
    except OCIError:
        return [], False
    try:
        records = logs.read_records(path, max_files)
    except OSError as exc:
        raise OCIError("container %s: cannot read its log %s: %s" % (container_id, path, exc.strerror or exc))
    records = logs.select_records(records, since=since)
    selected = lines(records)
    if tail is not None:
        selected = selected[-tail:] if tail else []
    kept, size = [], 0
    for line in reversed(selected):
        size += len(line["text"])
        if size > TEXT_MAX:
            break
        kept.append(line)
    kept.reverse()
    return kept, len(kept) < len(selected)
