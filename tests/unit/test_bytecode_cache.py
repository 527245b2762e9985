"""The modules' cache of compiled module_utils (_ansible/bytecode.py), on real zip payloads.

A payload zip like AnsiballZ's is built here with a probe module under the
collection's module_utils; the hook serves it from the zip, and its code
from the cache once persisted. What is not root's alone (a group-writable
directory, a file of another owner, a symlink) or not code is never
executed: the source is compiled instead, as without the cache.
"""
import os
import sys
import uuid
import zipfile

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bytecode
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import DEFAULT_ROOT


@pytest.fixture
def payload(tmp_path):
    """(zip path, module name, cache dir): a payload whose probe module records each execution."""
    name = "zz_probe_%s" % uuid.uuid4().hex[:8]
    archive = str(tmp_path / "payload.zip")
    member = bytecode.PREFIX.replace(".", "/") + name + ".py"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr(member, "VALUE = 6 * 7\nimport sys\nsys.modules[__name__].RUNS = 1\n")
    yield archive, bytecode.PREFIX + name, str(tmp_path / "cache")
    bytecode.uninstall()
    sys.modules.pop(bytecode.PREFIX + name, None)


def fresh_import(name):
    sys.modules.pop(name, None)
    __import__(name)
    return sys.modules[name]


def cache_files(directory):
    return sorted(n for n in os.listdir(directory) if not n.startswith(".")) if os.path.isdir(directory) else []


def test_code_is_cached_only_once_allowed_then_served_from_the_cache(payload):
    archive, name, directory = payload
    cache = bytecode.install(directory, archive)
    module = fresh_import(name)
    # Nothing of the zip stays open for a child that closes every descriptor, then imports (create's monitor).
    assert archive not in [os.readlink("/proc/self/fd/" + fd) for fd in os.listdir("/proc/self/fd")
                           if os.path.exists("/proc/self/fd/" + fd)]
    assert module.VALUE == 42 and module.__file__ == os.path.join(archive, name.replace(".", "/") + ".py")
    assert module.__loader__.get_source(name).startswith("VALUE = 6 * 7")
    assert (cache.hits, cache.misses) == (0, 1) and cache_files(directory) == []  # check mode writes nothing
    bytecode.persist(cache, False)
    assert cache_files(directory) == []
    bytecode.persist(cache, True)
    files = cache_files(directory)
    assert len(files) == 1 and files[0].startswith(sys.implementation.cache_tag + "-")
    st = os.stat(os.path.join(directory, files[0]))
    assert st.st_mode & 0o777 == 0o600 and os.stat(directory).st_mode & 0o777 == 0o700
    bytecode.uninstall()
    again = bytecode.install(directory, archive)
    assert fresh_import(name).VALUE == 42 and (again.hits, again.misses) == (1, 0)


def test_the_parent_of_the_cache_is_the_runtimes_default_state_root():
    assert os.path.dirname(bytecode.CACHE_DIR) == DEFAULT_ROOT
    assert os.path.basename(bytecode.CACHE_DIR).startswith("=")  # the runtime's own names, never an id


def test_a_directory_others_can_write_is_never_used(payload):
    archive, name, directory = payload
    os.mkdir(directory, 0o700)
    os.chmod(directory, 0o777)
    assert bytecode.install(directory, archive) is None
    assert not any(isinstance(f, bytecode._Finder) for f in sys.meta_path)  # modules import the usual way
    assert os.listdir(directory) == []


@pytest.mark.parametrize("spoil", ["other owner", "group writable", "symlink", "not code"])
def test_a_cache_file_not_roots_alone_or_not_code_is_compiled_again(payload, tmp_path, spoil):
    archive, name, directory = payload
    if spoil == "other owner" and os.geteuid() != 0:
        pytest.skip("giving a file to another owner needs root")
    cache = bytecode.install(directory, archive)
    bytecode.persist(cache, True)
    fresh_import(name)
    path = os.path.join(directory, cache_files(directory)[0])
    if spoil == "other owner":
        os.chown(path, 65534, 65534)
    elif spoil == "group writable":
        os.chmod(path, 0o620)
    elif spoil == "symlink":
        target = str(tmp_path / "elsewhere")
        os.rename(path, target)
        os.symlink(target, path)
    else:
        with open(path, "wb") as handle:
            handle.write(b"\xff not marshal data")
    bytecode.uninstall()
    again = bytecode.install(directory, archive)
    module = fresh_import(name)
    assert module.VALUE == 42 and (again.hits, again.misses) == (0, 1)
    if spoil == "not code":
        bytecode.persist(again, True)  # replaced by good code
        bytecode.uninstall()
        third = bytecode.install(directory, archive)
        fresh_import(name)
        assert (third.hits, third.misses) == (1, 0)


def test_without_a_zip_payload_nothing_is_installed():
    assert bytecode.install() is None  # this test imports the collection from files
    assert not any(isinstance(f, bytecode._Finder) for f in sys.meta_path)
