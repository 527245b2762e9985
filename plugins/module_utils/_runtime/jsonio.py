# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON through the C accelerator alone: `import json` pulls in re and enum, about
5 ms of every `ocirt` command's start-up, for features the runtime never uses.

loads() parses a document (surrounding whitespace allowed) with _json's C
scanner and refuses trailing data, as json.loads does; dumps() writes
compact JSON with the C encoder, or indented JSON (what `ocirt state` prints,
as runc does) with a small printer over the same string encoder. merge()
lays one JSON object over another: the one deep merge of the collection
(`ocirt update`'s resources over the recorded ones, oci_bundle's `config`
over the config it built). No config.json field is applied here.
"""
import _json

_WHITESPACE = " \t\n\r"


class _Context:
    """The attributes _json's scanner reads from a JSONDecoder."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Context())
_encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",", False, False, True)


def loads(text):
    """Parse TEXT (str or bytes); ValueError for anything json.loads would refuse."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError("Expecting value: char %d" % exc.value)
    except SystemError:
        # The scanner builds its error from json.decoder, which is not imported here:
        # on this (error) path only, let the json package say what is wrong.
        import json
        return json.loads(text)
    if text[end:].strip(_WHITESPACE):
        raise ValueError("Extra data: char %d" % end)
    return value


def dumps(value, indent=None):
    if indent is None:
        return "".join(_encode(value, 0))
    parts = []
    _pretty(value, indent, 0, parts)
    return "".join(parts)


def _pretty(value, indent, level, parts):
    pad = " " * (indent * (level + 1))
    if isinstance(value, dict) and value:
        parts.append("{\n")
        for index, (key, item) in enumerate(value.items()):
            parts.append("%s%s: " % (pad, _json.encode_basestring_ascii(str(key))))
            _pretty(item, indent, level + 1, parts)
            parts.append(",\n" if index < len(value) - 1 else "\n")
        parts.append(" " * (indent * level) + "}")
    elif isinstance(value, (list, tuple)) and value:
        parts.append("[\n")
        for index, item in enumerate(value):
            parts.append(pad)
            _pretty(item, indent, level + 1, parts)
            parts.append(",\n" if index < len(value) - 1 else "\n")
        parts.append(" " * (indent * level) + "]")
    else:
        parts.append("".join(_encode(value, 0)))


def merge(base, overlay):
    """BASE with OVERLAY laid over it: objects merge key by key, anything else (lists too) is replaced.

    Neither argument is changed, and the result shares no list or object with OVERLAY.
    """
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = _copy(value)
    return result


def _copy(value):
    if isinstance(value, dict):
        return dict((key, _copy(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
