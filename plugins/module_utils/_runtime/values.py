# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values people write as text: sizes (256M, 1.5g), signals (TERM, SIGKILL, 9), durations (1m30s)
and restart policies (on-failure:3).

One parser of each for every caller: `ocirt kill` and `ocirt update`, the
modules' stop_signal, memory and log sizes. Each raises OCIError naming the
field (or flag) it was given, so a bad value is reported as the caller's.
No config.json field is applied here.
"""
# The C module: the signal module builds enums at import, 3 ms of every command.
import _signal

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
              "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def is_digits(text):
    """Digits 0-9 only: str.isdigit also accepts characters int() refuses, such as '²'."""
    return text.isascii() and text.isdigit()


def parse_size(value, field):
    """Bytes from 268435456, '256M', '1.5g', '512kb' or -1 (unlimited), as runc's size flags take them."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise OCIError("%s: must be a size such as 256M, not %r" % (field, value))
    if isinstance(value, int):
        if value < -1:
            raise OCIError("%s: must be -1 (unlimited) or a size, not %d" % (field, value))
        return value
    text = value.strip().lower()
    if text == "-1":
        return -1
    number = text.rstrip("kmgtb")
    unit = text[len(number):]
    whole, _dot, fraction = number.partition(".")
    if (unit not in SIZE_UNITS or not (whole or fraction)
            or not all(is_digits(part) for part in (whole, fraction) if part)):
        raise OCIError("%s: %r is not a size (bytes, or a number with K, M, G or T)" % (field, value))
    # In integers: a float would round 1.1t to a byte more or less than the unit says.
    return int(whole + fraction or "0") * SIZE_UNITS[unit] // 10 ** len(fraction)


def parse_signal(value, field):
    """A signal number from 9, '9', 'KILL', 'SIGKILL' or 'sigkill' (the names of this host's kernel)."""
    text = str(value)
    if is_digits(text):
        number = int(text)
        if 0 < number < _signal.NSIG:
            return number
        raise OCIError("%s: signal %s is out of range 1-%d" % (field, text, _signal.NSIG - 1))
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(_signal, name, None) if not name.startswith("SIG_") else None
    if not isinstance(number, int):
        raise OCIError("%s: unknown signal %r" % (field, value))
    return number


DURATION_UNITS = (("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def parse_duration(value, field):
    """Seconds (a float) from 30, '30', '30s', '1m30s', '1h', '500ms' or '2.5s', as podman writes durations."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise OCIError("%s: must be a duration such as 30s or 1m30s, not %r" % (field, value))
    if not isinstance(value, str):
        if value < 0:
            raise OCIError("%s: must be 0 or more seconds, not %s" % (field, value))
        return float(value)
    text = value.strip().lower()
    if text and _is_number(text):
        return float(text)
    total = 0.0
    rest = text
    while rest:
        number = ""
        while rest and (rest[0] == "." or is_digits(rest[0])):
            number, rest = number + rest[0], rest[1:]
        for unit, scale in DURATION_UNITS:
            if rest.startswith(unit):
                break
        else:
            unit = None
        if not number or not _is_number(number) or unit is None:
            raise OCIError("%s: %r is not a duration (a number of seconds, or parts such as 1h, 1m30s, "
                           "500ms)" % (field, value))
        total += float(number) * scale
        rest = rest[len(unit):]
    if not text:
        raise OCIError("%s: an empty duration" % field)
    return total


def _is_number(text):
    whole, dot, fraction = text.partition(".")
    return bool(whole or fraction) and all(is_digits(part) for part in (whole, fraction) if part) \
        and (not dot or bool(fraction) or bool(whole))


RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse_restart_policy(value, field):
    """(name, maximum restarts or 0 for no limit) from 'no', 'on-failure', 'on-failure:N', 'always' or
    'unless-stopped', as podman and docker write restart policies."""
    text = "no" if value is None or value is False else str(value).strip().lower()
    name, colon, count = text.partition(":")
    if name not in RESTART_POLICIES or (colon and (name != "on-failure" or not is_digits(count))):
        raise OCIError("%s: %r is not a restart policy (no, on-failure, on-failure:N, always, unless-stopped)"
                       % (field, value))
    maximum = int(count) if colon else 0
    if colon and maximum < 1:
        raise OCIError("%s: on-failure:N needs N of 1 or more, not %s" % (field, count))
    return name, maximum
