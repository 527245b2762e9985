"""The modules' cache of compiled code on the managed host (_ansible/bytecode.py).

Two levels. A fresh interpreter imports the collection's real module_utils
from a zip built like AnsiballZ's payload (sources only), with the hook
installed the way the modules install it, and a cache directory of the
test's own under /run (root's alone, as the default /var/cache/ocirt/bytecode
is): served, cached, recompiled when a source changes, never read from a
directory or file that is not root's alone, nothing written when writing is
not allowed, and the monitor's runtime snapshot reads the payload through
the loader. Then real Ansible runs of the modules in a private mount
namespace whose /var/cache is an empty tmpfs (so the default cache starts
empty and is seen whole): a health check runs under oci_container_state with
the cache active (what 486f39b's loader broke), and check mode writes
nothing.
"""
import hashlib
import importlib.util
import json
import marshal
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile

import pytest

from helpers import REPO, SERVICE, ansible_env, new_id
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bytecode

TOP = "ansible_collections/daemonless/oci/plugins/module_utils/"
TAG = sys.implementation.cache_tag
HANG_SECONDS = 300  # stops a hung run; not a timing assertion
ANSIBLE_BIN = os.path.join(REPO, ".venv", "bin")


def build_payload(path, changes=None):
    """A zip like AnsiballZ's: the collection's module_utils sources (CHANGES: member -> bytes) and
    the packages' empty __init__.py files."""
    changes = dict(changes or {})
    source_root = os.path.join(REPO, "plugins", "module_utils")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for package in ("ansible_collections", "ansible_collections/daemonless", "ansible_collections/daemonless/oci",
                        "ansible_collections/daemonless/oci/plugins", TOP.rstrip("/")):
            if package + "/" == TOP and os.path.exists(os.path.join(source_root, "__init__.py")):
                continue
            out.writestr(package + "/__init__.py", b"")
        for dirpath, dirnames, filenames in os.walk(source_root):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for filename in filenames:
                if filename.endswith(".py"):
                    full = os.path.join(dirpath, filename)
                    member = TOP + os.path.relpath(full, source_root)
                    with open(full, "rb") as handle:
                        out.writestr(member, changes.pop(member, None) or handle.read())
    assert not changes, changes
    return path


PROBE = textwrap.dedent("""
    import json, os, sys, zipimport
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bytecode
    cache = bytecode.install(sys.argv[2])
    bytecode.persist(cache, sys.argv[3] == "write")
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime import ids
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import snapshot
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create
    out = dict(active=cache is not None, hits=cache and cache.hits, misses=cache and cache.misses,
               zipimporter=isinstance(snapshot.__loader__, zipimport.zipimporter),
               cached_loader=type(snapshot.__loader__).__name__, file=snapshot.__file__,
               probe=getattr(ids, "PROBE", None),
               open=[os.readlink("/proc/self/fd/" + fd) for fd in os.listdir("/proc/self/fd")
                     if os.path.exists("/proc/self/fd/" + fd)])
    if len(sys.argv) > 4:
        out["snapshot"] = snapshot.runtime_snapshot(sys.argv[4])
    print(json.dumps(out))
""")


def run_probe(archive, directory, write=True, snapshot_root=None):
    command = [sys.executable, "-I", "-c", PROBE, archive, directory, "write" if write else "no"]
    done = subprocess.run(command + ([snapshot_root] if snapshot_root else []), capture_output=True, text=True,
                          check=False, timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cache_files(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


@pytest.fixture
def private_dir():
    """A directory only root can write, as the cache needs (/tmp, world-writable, never qualifies)."""
    parent = "/run/ocirt-bytecode-test-%s" % uuid.uuid4().hex[:12]
    os.mkdir(parent, 0o700)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def payload(tmp_path):
    return build_payload(str(tmp_path / "payload.zip"))


def test_code_is_cached_then_served_and_the_loader_is_still_a_zipimporter_with_no_descriptor_left(
        payload, private_dir):
    directory = os.path.join(private_dir, "var", "cache")
    first = run_probe(payload, directory)
    # (Identical sources, the empty __init__.py files, share one entry: hits on a first run.)
    assert first["active"] and first["misses"] > 10 and first["hits"] < 10, first
    # The monitor's snapshot and the network hook read the payload through the loader, as through zipimport's.
    assert first["zipimporter"] and first["cached_loader"] == "CachingZipImporter", first
    assert first["file"] == os.path.join(payload, TOP + "_runtime/monitor/snapshot.py")
    # create's monitor closes every descriptor and then imports: none of the zip may stay open.
    assert payload not in first["open"], first["open"]
    files = cache_files(directory)
    assert len(files) >= 10 and all(name.startswith(TAG + "-") and name.endswith(".code") for name in files)
    # Made root's alone, each entry too.
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert all(os.stat(os.path.join(directory, name)).st_mode & 0o777 == 0o600 for name in files)
    with zipfile.ZipFile(payload) as z:
        source = z.read(TOP + "_runtime/ids.py")
    with open(os.path.join(directory, "%s-%s.code" % (TAG, hashlib.sha256(source).hexdigest())), "rb") as handle:
        assert handle.read(4) == importlib.util.MAGIC_NUMBER
    second = run_probe(payload, directory)
    assert second["misses"] == 0 and second["hits"] == first["misses"] + first["hits"], second
    assert cache_files(directory) == files


def test_the_runtime_snapshot_gets_the_payloads_sources_through_the_cached_loader(payload, private_dir, tmp_path):
    directory = os.path.join(private_dir, "cache")
    run_probe(payload, directory)
    root = str(tmp_path / "root")
    os.mkdir(root)
    made = run_probe(payload, directory, snapshot_root=root)
    assert made["hits"] > 0 and made["misses"] == 0
    package = os.path.join(made["snapshot"], *"ansible_collections.daemonless.oci.plugins.module_utils._runtime".split("."))
    copied = {}
    for dirpath, _dirs, filenames in os.walk(package):
        for filename in filenames:
            with open(os.path.join(dirpath, filename), "rb") as handle:
                copied[os.path.relpath(os.path.join(dirpath, filename), package)] = handle.read()
    expected = {}
    with zipfile.ZipFile(payload) as z:
        for name in z.namelist():
            if name.startswith(TOP + "_runtime/"):
                expected[name[len(TOP + "_runtime/"):]] = z.read(name)
    assert copied == expected and "monitor/supervise.py" in copied


def test_a_changed_source_is_compiled_again_and_only_it(payload, private_dir, tmp_path):
    directory = os.path.join(private_dir, "cache")
    before = run_probe(payload, directory)
    with open(os.path.join(REPO, "plugins/module_utils/_runtime/ids.py"), "rb") as handle:
        changed = handle.read() + b"\nPROBE = 'changed'\n"
    other = build_payload(str(tmp_path / "other.zip"), {TOP + "_runtime/ids.py": changed})
    after = run_probe(other, directory)
    assert after["probe"] == "changed" and after["misses"] == 1 and after["hits"] == before["misses"] + before["hits"] - 1, after
    again = run_probe(payload, directory)
    assert again["probe"] is None and again["misses"] == 0


def _owned_by_nobody(path):
    os.chown(path, 65534, 65534)


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda d: os.chmod(d, 0o777), id="world-writable"),
    pytest.param(lambda d: os.chmod(d, 0o770), id="group-writable"),
    pytest.param(_owned_by_nobody, id="another-owner"),
    pytest.param(lambda d: os.chmod(os.path.dirname(d), 0o777), id="parent-world-writable"),
])
def test_a_cache_directory_not_roots_alone_is_neither_read_nor_written(payload, private_dir, spoil):
    directory = os.path.join(private_dir, "cache")
    run_probe(payload, directory)
    files = cache_files(directory)
    # What someone else could have put there would run as root: the planted code must never run.
    _plant(directory, files, payload)
    spoil(directory)
    result = run_probe(payload, directory)
    assert not result["active"] and result["probe"] is None, result
    assert cache_files(directory) == files


def test_a_symlinked_cache_directory_is_not_used(payload, private_dir):
    real = os.path.join(private_dir, "real")
    run_probe(payload, real)
    link = os.path.join(private_dir, "link")
    os.symlink(real, link)
    result = run_probe(payload, link)
    assert not result["active"], result
    assert not run_probe(payload, os.path.join(link, "below"))["active"]


def _plant(directory, files, payload):
    """Replace ids.py's cache entry with code that sets PROBE: a valid entry in every other way."""
    with zipfile.ZipFile(payload) as z:
        source = z.read(TOP + "_runtime/ids.py")
    digest = hashlib.sha256(source)
    name = "%s-%s.code" % (TAG, digest.hexdigest())
    assert name in files
    code = compile(source + b"\nPROBE = 'planted'\n", "planted", "exec")
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(importlib.util.MAGIC_NUMBER + digest.digest() + marshal.dumps(code))
    os.chmod(path, 0o600)
    return path


def test_the_planted_entry_does_run_when_it_is_roots_alone(payload, private_dir):
    """The check of the hostile cases above: the same planted file, left root's alone, is served."""
    directory = os.path.join(private_dir, "cache")
    run_probe(payload, directory)
    _plant(directory, cache_files(directory), payload)
    assert run_probe(payload, directory)["probe"] == "planted"


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda p: os.chmod(p, 0o666), id="world-writable-file"),
    pytest.param(_owned_by_nobody, id="another-owners-file"),
    pytest.param("symlink", id="symlink"),
    pytest.param("foreign-magic", id="another-interpreters"),
    pytest.param("garbage", id="not-marshal"),
    pytest.param("truncated", id="truncated"),
    pytest.param("fifo", id="fifo"),
])
def test_a_hostile_or_corrupt_cache_file_is_ignored_and_compiled_again(payload, private_dir, spoil):
    directory = os.path.join(private_dir, "cache")
    run_probe(payload, directory)
    path = _plant(directory, cache_files(directory), payload)
    with open(path, "rb") as handle:
        data = handle.read()
    if spoil == "symlink":
        os.rename(path, path + ".real")
        os.symlink(path + ".real", path)
    elif spoil == "foreign-magic":
        with open(path, "wb") as handle:
            handle.write(b"\x00\x00\r\n" + data[4:])
    elif spoil == "garbage":
        with open(path, "wb") as handle:
            handle.write(data[:36] + b"\xff" * 64)
    elif spoil == "truncated":
        with open(path, "wb") as handle:
            handle.write(data[:len(data) // 2])
    elif spoil == "fifo":
        os.unlink(path)
        os.mkfifo(path, 0o600)
    else:
        spoil(path)
    result = run_probe(payload, directory)
    assert result["active"] and result["probe"] is None and result["misses"] == 1, result
    # Replaced by a good entry where it could be: not a symlink's target, never through it.
    if spoil in ("foreign-magic", "garbage", "truncated"):
        assert run_probe(payload, directory)["misses"] == 0
    if spoil == "symlink":
        with open(path + ".real", "rb") as handle:
            assert handle.read() == data


def test_nothing_is_written_when_writing_is_not_allowed(payload, private_dir):
    directory = os.path.join(private_dir, "var", "cache")
    result = run_probe(payload, directory, write=False)
    assert result["active"] and result["misses"] > 10
    assert not os.path.exists(os.path.join(private_dir, "var"))


def test_trusted_checks_each_component(private_dir):
    assert bytecode.trusted(os.path.join(private_dir, "not", "made"))
    assert not bytecode.trusted(os.path.join(private_dir, "not", "made"), missing_ok=False)
    assert not bytecode.trusted("relative/path")
    assert not bytecode.trusted("/tmp/anything")  # /tmp is world-writable
    assert bytecode.trusted(private_dir, missing_ok=False)


# --------------------------------------------------------------------------
# real Ansible runs, the default cache directory on an empty tmpfs


LISTING = "=== cache ==="


def in_fresh_cache(command):
    """COMMAND run in a private mount namespace whose /var/cache is an empty tmpfs; (its output, the
    cache files the run left: [(name, mode, uid)])."""
    wrapper = ("mount -t tmpfs -o mode=0755 tmpfs /var/cache && \"$@\"; rc=$?; echo %s; "
               "find /var/cache -mindepth 1 -printf '%%P %%m %%U\\n'; exit $rc" % LISTING)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", wrapper, "sh"]
                          + command, env=ansible_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, timeout=HANG_SECONDS)
    output, _marker, listing = done.stdout.partition(LISTING)
    assert listing, done.stdout + done.stderr
    return done, output, [tuple(line.split()) for line in listing.strip().splitlines()]


def test_a_health_check_runs_under_ansible_with_the_cache_active(state_root, make_bundle, scratch):
    """What 486f39b's loader broke: the monitor's snapshot of the runtime, read from the payload through
    the cached loader, and the health check the monitor runs from it."""
    cid = new_id("bc")
    bundle = make_bundle(SERVICE)
    out = os.path.join(scratch, "results.json")
    check = dict(test=["true"], interval="0.2s", retries=2)
    tasks = [
        {"name": "health", "daemonless.oci.oci_container_state": dict(
            id=cid, bundle=bundle, state_root=state_root, healthcheck=check, wait="healthy", timeout=60),
         "register": "made"},
        # A second run in the same namespace: its imports come from what the first wrote.
        {"name": "again", "daemonless.oci.oci_container_state": dict(
            id=cid, bundle=bundle, state_root=state_root, healthcheck=check), "register": "again"},
        {"name": "results", "ansible.builtin.copy": {"dest": out, "content": "{{ [made, again] | to_json }}"}},
        {"name": "absent", "daemonless.oci.oci_container_state": dict(id=cid, state_root=state_root, state="absent")},
    ]
    playbook = os.path.join(scratch, "health.yml")
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], handle)
    done, output, files = in_fresh_cache([os.path.join(ANSIBLE_BIN, "ansible-playbook"), "-i", "localhost,",
                                          "-c", "local", playbook])
    assert done.returncode == 0 and "Traceback" not in output, output + done.stderr
    with open(out) as handle:
        made, again = json.load(handle)
    results = dict(made=made, again=again)
    health = results["made"]["container"]["health"]
    assert health["status"] == "healthy" and health["last_exit_code"] == 0, health
    assert results["again"]["changed"] is False
    # The cache was active: the runtime's snapshot module, among others, is in it, root's alone.
    with open(os.path.join(REPO, "plugins/module_utils/_runtime/monitor/snapshot.py"), "rb") as handle:
        snapshot_entry = "ocirt/bytecode/%s-%s.code" % (TAG, hashlib.sha256(handle.read()).hexdigest())
    modes = dict((name, (mode, uid)) for name, mode, uid in files)
    assert modes.get(snapshot_entry) == ("600", "0"), files
    assert modes["ocirt/bytecode"] == ("700", "0") and modes["ocirt"] == ("700", "0")
    # Nothing of the cache in the state root.
    assert not os.path.isdir(state_root) or not [name for name in os.listdir(state_root) if "bytecode" in name]


def test_check_mode_writes_no_cache_and_a_real_run_does(state_root):
    args = json.dumps(dict(id=new_id("bc"), state="absent", state_root=state_root))
    command = [os.path.join(ANSIBLE_BIN, "ansible"), "localhost", "-c", "local", "-m",
               "daemonless.oci.oci_container_state", "-a", args]
    done, output, files = in_fresh_cache(command + ["--check"])
    assert done.returncode == 0 and "SUCCESS" in output, output + done.stderr
    assert files == []
    done, output, files = in_fresh_cache(command)
    assert done.returncode == 0 and "SUCCESS" in output, output + done.stderr
    assert len([entry for entry in files if entry[0].startswith("ocirt/bytecode/")]) > 10, files
