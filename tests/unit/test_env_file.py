"""oci_bundle's env_file (_bundle/env_file.py and its place in _bundle/config.py), on real files.

The semantics are the documented ones: KEY=VALUE verbatim, comments and
blank lines skipped, a KEY alone refused, later lines and files winning,
and the file's variables below the env option's.
"""
import os

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import config as bundle_config
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import env_file
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def test_lines_are_taken_verbatim_with_comments_and_blanks_skipped(tmp_path):
    path = write(tmp_path, "app.env", "# a comment\n\n   \n  INDENTED=yes\nQUOTED=\"kept\"\nSPACES= a b \n"
                                      "EXPAND=$HOME\nEQUALS=a=b=c\nEMPTY=\nDOS=crlf\r\nDUP=first\nDUP=second\n"
                                      "  # indented comment\nHASH=not # a comment")
    assert env_file.read(path) == [("INDENTED", "yes"), ("QUOTED", '"kept"'), ("SPACES", " a b "),
                                   ("EXPAND", "$HOME"), ("EQUALS", "a=b=c"), ("EMPTY", ""), ("DOS", "crlf"),
                                   ("DUP", "first"), ("DUP", "second"), ("HASH", "not # a comment")]


@pytest.mark.parametrize("data, needle", [
    ("GOOD=1\nHOME\n", "line 2: 'HOME' is not KEY=VALUE"),
    ("=value\n", "line 1: '' is not a valid variable name"),
    ("BAD KEY=1\n", "line 1: 'BAD KEY' is not a valid variable name"),
    (b"A=\x00\n", "line 1: holds a NUL byte"),
    (b"A=\xff\xfe\n", "is not UTF-8 text"),
])
def test_bad_lines_are_errors_naming_env_file_the_file_and_the_line(tmp_path, data, needle):
    path = write(tmp_path, "bad.env", data)
    with pytest.raises(OCIError) as caught:
        env_file.read(path)
    assert str(caught.value).startswith("env_file: %s" % path) and needle in str(caught.value)


def test_a_missing_file_a_directory_a_fifo_and_a_huge_file_are_errors(tmp_path):
    with pytest.raises(OCIError, match="env_file: cannot read .*: No such file"):
        env_file.read(str(tmp_path / "missing"))
    with pytest.raises(OCIError, match="is not a regular file"):
        env_file.read(str(tmp_path))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(OCIError, match="is not a regular file"):
        env_file.read(fifo)
    huge = str(tmp_path / "huge")
    with open(huge, "wb") as handle:
        handle.truncate(env_file.MAX_FILE_SIZE + 1)
    with pytest.raises(OCIError, match="is larger than"):
        env_file.read(huge)


def test_env_file_merges_over_the_image_and_under_env_and_later_files_win(tmp_path):
    first = write(tmp_path, "first.env", "A=file1\nB=file1\nC=file1\n")
    second = write(tmp_path, "second.env", "B=file2\n")
    config = bundle_config.build_config({"env_file": [first, second], "env": {"C": "option"}},
                                        image_config={"Env": ["A=image", "IMAGE_ONLY=1"]})
    env = config["process"]["env"]
    assert "A=file1" in env and "B=file2" in env and "C=option" in env and "IMAGE_ONLY=1" in env
    assert not [e for e in env if e.startswith(("A=image", "B=file1", "C=file"))]


# The env option (a dict) shares env_file's name rule; its values are text, an integer taken as its digits.

def env_of(env):
    return bundle_config.build_config({"env": env})["process"]["env"]


def test_env_strings_and_integers_are_text_and_a_leading_digit_is_a_name():
    env = env_of({"PORT": 8080, "NAME": "web", "EMPTY": "", "1X": "y", "ZERO": 0})
    assert "PORT=8080" in env and "NAME=web" in env and "EMPTY=" in env and "1X=y" in env and "ZERO=0" in env


@pytest.mark.parametrize("env, message", [
    ({"A=B": "x"}, "env: 'A=B' is not a valid variable name"),
    ({"": "z"}, "env: '' is not a valid variable name"),
    ({"A B": "x"}, "env: 'A B' is not a valid variable name"),
    ({"DEBUG": True}, 'env.DEBUG: true is a boolean; quote it ("true") to pass the text'),
    ({"OFF": False}, 'env.OFF: false is a boolean; quote it ("false") to pass the text'),
    ({"EMPTY": None}, 'env.EMPTY: null is not a value; give "" for an empty one'),
    ({"VERSION": 1.1}, "env.VERSION: 1.1 is a number with a decimal point"),
    ({"HOSTS": ["a", "b"]}, "env.HOSTS: a list is not a value; give a string"),
    ({"OPTS": {"a": 1}}, "env.OPTS: a dict is not a value; give a string"),
    ({"NUL": "a\0b"}, "env.NUL: the value holds a NUL byte"),
])
def test_a_bad_env_name_or_value_is_an_error_naming_env_and_the_key(env, message):
    with pytest.raises(OCIError) as caught:
        env_of(dict({"GOOD": "1"}, **env))
    assert str(caught.value).startswith(message), caught.value


def test_oci_container_exec_takes_env_under_the_same_rules():
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_exec
    assert container_exec.env_list({"PORT": 8080, "A": "b"}) == ["PORT=8080", "A=b"]
    with pytest.raises(OCIError, match=r'^env\.DEBUG: true is a boolean'):
        container_exec.env_list({"DEBUG": True})
    with pytest.raises(OCIError, match=r"^env: 'A=B' is not a valid variable name"):
        container_exec.env_list({"A=B": "x"})
