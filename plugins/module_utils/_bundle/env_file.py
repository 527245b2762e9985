# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Environment variables from the modules' options: env_file's files of KEY=VALUE lines on the managed host,
and the env dicts of oci_bundle, oci_containers' items and oci_container_exec, both under one name rule.

Kept simpler than podman's --env-file, and strict, so a file means one thing:
  - one variable per line, KEY=VALUE; VALUE is everything after the first
    '=', verbatim (no quotes removed, no $VAR expanded, spaces kept); a
    trailing carriage return (a file from Windows) is dropped;
  - blank lines and lines whose first non-blank character is '#' are skipped;
  - leading blanks before KEY are skipped; KEY is a valid name (check_name:
    non-empty, no blank, '=' or NUL; a leading digit is allowed, as docker
    allows it, though a POSIX shell cannot expand such a name);
  - a KEY alone (no '='), which podman would take from the host's
    environment, is an error naming the file and line: the managed host's
    environment is not the container's business;
  - later lines, and later files, win.
A file is read as UTF-8, must be a regular file, and at most MAX_FILE_SIZE.

An env dict's values are text: a string, or an integer as its decimal text
(YAML's `PORT: 8080`). Anything else is refused rather than printed, since
YAML turns `yes`, `~` and `1.10` into a boolean, a null and the number 1.1
without a word, and "True", "None" or "1.1" in a container are nobody's wish.
"""
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

MAX_FILE_SIZE = 1 << 20


def read(path, field="env_file"):
    """[(key, value)] of the file at PATH, in file order."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise OCIError("%s: cannot read %s: %s" % (field, path, exc.strerror))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OCIError("%s: %s is not a regular file" % (field, path))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_FILE_SIZE + 1)
    if len(data) > MAX_FILE_SIZE:
        raise OCIError("%s: %s is larger than %d bytes" % (field, path, MAX_FILE_SIZE))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OCIError("%s: %s is not UTF-8 text (byte %d)" % (field, path, exc.start))
    entries = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line[:-1] if line.endswith("\r") else line
        stripped = line.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        where = "%s: %s line %d" % (field, path, number)
        if "\0" in stripped:
            raise OCIError("%s: holds a NUL byte" % where)
        if "=" not in stripped:
            raise OCIError("%s: %r is not KEY=VALUE (a KEY alone does not take the host's value)"
                           % (where, stripped[:40]))
        key, value = stripped.split("=", 1)
        check_name(key, where)
        entries.append((key, value))
    return entries


def check_name(key, where):
    """OCIError unless KEY can be a variable's name: a blank or '=' would split or shift it in NAME=value."""
    if not key or any(c in key for c in " \t=\0"):
        raise OCIError("%s: %r is not a valid variable name" % (where, key[:40]))


def _refusal(value):
    """Why VALUE (not a string) is not an env value, and what to give instead."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        return '%s is a boolean; quote it ("%s") to pass the text' % (text, text)
    if value is None:
        return 'null is not a value; give "" for an empty one'
    if isinstance(value, float):
        return "%r is a number with a decimal point, which YAML may have changed (1.10 is 1.1); quote it" % value
    return "a %s is not a value; give a string" % type(value).__name__


def option_entries(env, field="env"):
    """[(key, value)] of an env option's dict, each name and value checked (a value's error names FIELD.KEY)."""
    entries = []
    for key, value in (env or {}).items():
        key = str(key)
        check_name(key, field)
        where = "%s.%s" % (field, key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise OCIError("%s: %s" % (where, _refusal(value)))
        if "\0" in value:
            raise OCIError("%s: the value holds a NUL byte" % where)
        entries.append((key, value))
    return entries


def read_all(paths, field="env_file"):
    """{key: value} of the files at PATHS, later ones winning."""
    result = {}
    for path in paths or []:
        result.update(read(path, field))
    return result
