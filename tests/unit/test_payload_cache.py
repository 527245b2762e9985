"""The payload cache's store, validation and guards (plugins/plugin_utils/_payload_cache.py), in process.

One real payload is built by ansible's own modify_module (in a fresh
interpreter, as a worker builds it) from a private copy of the collection;
the tests save it through the cache, plant it back, and then feed the cache
hostile and stale stores: truncated, corrupt, foreign and symlinked entries,
a store that is another user's or writable by others, an unwritable store,
sources changed in content, in mtime alone, by a new file beside them. Each
must be ignored (never an error, never a wrong payload) and, where the store
is usable, replaced by the next build. tests/runtime/test_payload_cache_playbooks.py
proves the same through real playbook runs.
"""
import ast
import base64
import dataclasses
import glob
import hashlib
import importlib
import importlib.util
import io
import json
import marshal
import os
import shutil
import stat
import subprocess
import zipfile

import pytest

import ansible
from ansible import constants as C
from ansible import release
from ansible.executor import module_common
from ansible.plugins.action.normal import ActionModule as NormalAction

from helpers import REPO
from payload_cache_support import HANG_SECONDS, PYTHON, copy_collection, zip_members
from ansible_collections.daemonless.oci.plugins.plugin_utils import _payload_cache as cache

MODULE = "oci_container_info"
FQN = "ansible_collections.daemonless.oci.plugins.modules." + MODULE
RUN_NAME = FQN + "-ZIP_DEFLATED-none"
IDENTITY = {"ansible": release.__version__, "fqn": FQN, "compression": "ZIP_DEFLATED", "extension_key": "none"}
BUILD = r"""
import os, sys
os.environ["ANSIBLE_COLLECTIONS_PATH"] = sys.argv[1]
from ansible import constants as C
from ansible.executor import module_common
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, module_loader
from ansible.template import Templar
init_plugin_loader([sys.argv[1]])
C.DEFAULT_LOCAL_TMP = sys.argv[2]
name = "daemonless.oci." + sys.argv[3]
path = module_loader.find_plugin_with_context(name).plugin_resolved_path
module_common.modify_module(module_name=name, module_path=path, module_args={}, templar=Templar(loader=DataLoader()),
                            module_compression="ZIP_DEFLATED",
                            task_vars={"ansible_python_interpreter": sys.executable})
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(collection root, path of ansible's own cache file of MODULE's build from that root)."""
    base = str(tmp_path_factory.mktemp("payload-cache"))
    collections_path, root = copy_collection(base)
    run_tmp = os.path.join(base, "ansible-run")
    env = dict((key, value) for key, value in os.environ.items()
               if key != "PYTHONPATH" and not key.startswith(("ANSIBLE_", "DAEMONLESS_OCI_")))
    subprocess.run([PYTHON, "-c", BUILD, collections_path, run_tmp, MODULE], env=env, check=True, timeout=HANG_SECONDS)
    return root, os.path.join(run_tmp, "ansiballz_cache", RUN_NAME)


def new_slot(root, base, store=None):
    return cache.Slot(identity=dict(IDENTITY), run_file=os.path.join(base, "run-%d" % len(os.listdir(base)),
                                                                     "ansiballz_cache", RUN_NAME),
                      store_dir=store or os.path.join(base, "store"), entry_name=FQN + "-0123456789abcdef.json",
                      collection_root=root, ansible_dir=os.path.dirname(ansible.__file__))


def after_build(slot, build_file):
    """SLOT as it is after ansible built the payload in this run: the cache file in the run's directory."""
    os.makedirs(os.path.dirname(slot.run_file))
    shutil.copy(build_file, slot.run_file)
    return slot


def planted(slot):
    """Plant SLOT; return the zip data planted, or None when nothing was planted (checking nothing was left)."""
    slot.plant()
    if not slot.planted:
        assert not os.path.exists(slot.run_file)
        assert not glob.glob(os.path.join(os.path.dirname(slot.run_file), "*part*"))
        return None
    return module_common._CachedModule.load(slot.run_file).zip_data


@pytest.fixture
def saved(built, tmp_path):
    """A store holding the entry of the real build: (root, base, entry path, ansible's zip data)."""
    root, build_file = built
    base = str(tmp_path)
    after_build(new_slot(root, base), build_file).save()
    entry = os.path.join(base, "store", FQN + "-0123456789abcdef.json")
    assert os.path.isfile(entry)
    with open(entry) as handle:
        return root, base, entry, json.load(handle)["zip_data"].encode()


def test_a_saved_build_is_planted_as_ansible_built_it_with_compiled_code_beside_ansibles_sources(built, saved):
    root, base, entry, zip_data = saved
    got = zip_members(planted(new_slot(root, base)))
    assert got == zip_members(zip_data)
    members = zip_members(module_common._CachedModule.load(built[1]).zip_data)
    # Every member of ansible's build, unchanged; and a .pyc beside each of ansible's own sources, none beside ours.
    assert dict((name, got[name]) for name in members) == members
    compiled = sorted(name for name in got if name not in members)
    assert compiled == sorted(name[:-3] + ".pyc" for name in members if name.startswith("ansible/"))
    assert "ansible/module_utils/basic.pyc" in compiled
    with open(entry) as handle:
        recorded = json.load(handle)
    # Every member is accounted for: a recorded file, a package known to be absent, or one ansible writes.
    mapped = len(recorded["files"]) + len(recorded["absent"])
    synthesized = [name for name in members if name in cache.ANSIBLE_SYNTHESIZED | cache.EMPTY_NAMESPACE_MEMBERS]
    assert mapped + len(synthesized) == len(members) and len(recorded["files"]) > 40
    assert os.path.join(root, "plugins", "modules", MODULE + ".py") in recorded["files"]
    assert os.path.join(os.path.dirname(ansible.__file__), "module_utils", "basic.py") in recorded["files"]
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(entry)).st_mode) == 0o700
    # The planted file is loaded by ansible's own loader with the build's metadata and mapping.
    built_module = module_common._CachedModule.load(built[1])
    slot = new_slot(root, base)
    slot.plant()
    assert dataclasses.replace(module_common._CachedModule.load(slot.run_file), zip_data=built_module.zip_data) \
        == built_module


def test_without_bytecode_the_build_is_kept_exactly_as_ansible_made_it(built, tmp_path):
    root, build_file = built
    slot = new_slot(root, str(tmp_path))
    slot.identity["bytecode"] = False
    after_build(slot, build_file).save()
    kept = new_slot(root, str(tmp_path))
    kept.identity["bytecode"] = False
    assert planted(kept) == module_common._CachedModule.load(build_file).zip_data
    # The identity tells the two kinds of entry apart: one kept with compiled code is not planted for it.
    assert planted(new_slot(root, str(tmp_path))) is None


def test_the_build_that_is_kept_also_serves_the_rest_of_the_run(built, tmp_path):
    root, build_file = built
    slot = after_build(new_slot(root, str(tmp_path)), build_file)
    slot.save()
    assert "ansible/module_utils/basic.pyc" in zip_members(module_common._CachedModule.load(slot.run_file).zip_data)


IMPORT_BASIC = r"""
import json, sys
compiled = []
sys.addaudithook(lambda event, args: compiled.append(args[1]) if event == "compile" else None)
sys.path.insert(0, sys.argv[1])
import ansible.module_utils.basic as basic
import ansible.module_utils.parsing.convert_bool as convert_bool
print(json.dumps({"basic": basic.__file__, "compiled": [str(name) for name in compiled if str(name).endswith(".py")],
                  "marked": hasattr(convert_bool, "MARKED_IN_THE_ZIP")}))
"""


def import_basic_from(zip_bytes, directory):
    """What importing ansible.module_utils.basic from ZIP_BYTES does in a host interpreter (the tests' own,
    the controller's version): basic's __file__, the ansible sources it compiled, and whether convert_bool
    is the changed source's (see below)."""
    path = os.path.join(directory, "payload-%d.zip" % len(os.listdir(directory)))
    with open(path, "wb") as handle:
        handle.write(zip_bytes)
    done = subprocess.run([PYTHON, "-I", "-c", IMPORT_BASIC, path], capture_output=True, text=True, check=True,
                          timeout=HANG_SECONDS)
    result = json.loads(done.stdout)
    assert result["basic"].startswith(path + os.sep), result  # from the zip, not from the venv
    result["compiled"] = sorted(name[len(path) + 1:] if name.startswith(path + os.sep) else name
                                for name in result["compiled"])
    return result


def _rezipped(members, change):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, change(name, data))
    return out.getvalue()


def test_ansibles_code_is_imported_compiled_and_falls_back_to_its_sources_where_the_code_cannot_serve(
        built, saved, tmp_path):
    root, base, _entry, _zip_data = saved
    kept = base64.b64decode(planted(new_slot(root, base)))
    as_built = base64.b64decode(module_common._CachedModule.load(built[1]).zip_data)
    directory = str(tmp_path / "imports")
    os.mkdir(directory)

    # ansible's build: basic and everything it imports compiled on the host, on every run.
    plain = import_basic_from(as_built, directory)
    assert plain["basic"].endswith("basic.py") and len(plain["compiled"]) > 20, plain
    # The kept build: nothing of ansible's compiled.
    fast = import_basic_from(kept, directory)
    assert fast["basic"].endswith("basic.pyc") and fast["compiled"] == [], fast

    members = zip_members(base64.b64encode(kept))
    # Another Python (another magic number): every source compiled, as without the code beside it.
    other_python = _rezipped(members, lambda name, data: b"\0\0" + data[2:] if name.endswith(".pyc") else data)
    foreign = import_basic_from(other_python, directory)
    assert foreign["basic"].endswith("basic.py") and foreign["compiled"] == plain["compiled"]
    # A source that differs from what its code was compiled from: the source runs, not the code.
    changed = "ansible/module_utils/parsing/convert_bool.py"
    assert changed[:-3] + ".pyc" in members
    edited = import_basic_from(_rezipped(members, lambda name, data: data + b"\nMARKED_IN_THE_ZIP = 1\n"
                                         if name == changed else data), directory)
    assert edited["marked"] and set(edited["compiled"]) == {changed}, edited  # (zipimport compiles twice)
    assert not fast["marked"]


def test_a_source_this_python_cannot_compile_is_left_to_the_host():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("ansible/module_utils/new_syntax.py", b"def f(:\n")
        archive.writestr("ansible/module_utils/fine.py", b"X = 1\n")
        archive.writestr("ansible_collections/daemonless/oci/plugins/module_utils/ours.py", b"Y = 2\n")
    with zipfile.ZipFile(io.BytesIO(cache.with_bytecode(out.getvalue()))) as archive:
        assert archive.namelist() == ["ansible/module_utils/new_syntax.py", "ansible/module_utils/fine.py",
                                      "ansible/module_utils/fine.pyc",
                                      "ansible_collections/daemonless/oci/plugins/module_utils/ours.py"]
        pyc = archive.read("ansible/module_utils/fine.pyc")
    assert pyc[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(pyc[4:8], "little") == 0b11
    assert pyc[8:16] == importlib.util.source_hash(b"X = 1\n") and marshal.loads(pyc[16:]).co_names == ("X",)


def _truncate(entry):
    with open(entry, "r+b") as handle:
        handle.truncate(os.path.getsize(entry) // 2)


def _rewrite(change):
    def apply(entry):
        with open(entry) as handle:
            data = json.load(handle)
        change(data)
        with open(entry, "w") as handle:
            json.dump(data, handle)
    return apply


def _flip_zip(data):
    text = data["zip_data"]
    middle = len(text) // 2
    data["zip_data"] = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1:]


def _not_base64_but_digest_matches(data):
    data["zip_data"] = "!!" + data["zip_data"][2:]
    data["zip_sha256"] = hashlib.sha256(data["zip_data"].encode()).hexdigest()


def _first_file_grown(data):
    path = sorted(data["files"])[0]
    data["files"][path][0] += 1


def _symlink_to_copy(entry):
    """The valid entry moved out of the store, a symlink to it in its place."""
    moved = os.path.join(os.path.dirname(os.path.dirname(entry)), "valid-copy.json")
    os.rename(entry, moved)
    os.symlink(moved, entry)


def _fifo(entry):
    os.unlink(entry)
    os.mkfifo(entry, 0o600)


def _json_list(entry):
    with open(entry, "w") as handle:
        handle.write("[1, 2]")


def _garbage(entry):
    with open(entry, "wb") as handle:
        handle.write(b"\x80\x04\x95 not json, a pickle's opening")


HOSTILE = {
    "truncated": _truncate,
    "not JSON": _garbage,
    "a JSON list": _json_list,
    "another format": _rewrite(lambda data: data.update(format=99)),
    "another ansible-core (a foreign entry)": _rewrite(lambda data: data["identity"].update(ansible="2.18.0")),
    "a flipped byte in the zip": _rewrite(_flip_zip),
    "no base64, with a matching digest": _rewrite(_not_base64_but_digest_matches),
    "files not a mapping": _rewrite(lambda data: data.update(files=list(data["files"]))),
    "a recorded size that is not the file's": _rewrite(_first_file_grown),
    "a mapping of non-strings": _rewrite(lambda data: data.update(source_mapping={"a": 1})),
    "a symlink to a valid entry": _symlink_to_copy,
    "a FIFO": _fifo,
}


@pytest.mark.parametrize("damage", sorted(HOSTILE))
def test_a_hostile_entry_is_ignored_and_replaced_by_the_next_build(built, saved, damage):
    root, base, entry, zip_data = saved
    HOSTILE[damage](entry)
    assert planted(new_slot(root, base)) is None
    # The next build replaces it (a symlink itself, never what it points to).
    copy = os.path.join(base, "valid-copy.json")
    before = open(copy, "rb").read() if os.path.exists(copy) else None
    after_build(new_slot(root, base), built[1]).save()
    assert not os.path.islink(entry) and stat.S_ISREG(os.stat(entry).st_mode)
    assert planted(new_slot(root, base)) == zip_data
    if before is not None:
        assert open(copy, "rb").read() == before
    assert [name for name in os.listdir(os.path.dirname(entry)) if name.endswith(".part")] == []


def _group_writable(store):
    os.chmod(store, 0o770)


def _world_writable(store):
    os.chmod(store, 0o777)


def _other_owner(store):
    os.chown(store, 65534, 65534)


def _a_symlink(store):
    os.rename(store, store + "-real")
    os.symlink(store + "-real", store)


@pytest.mark.parametrize("unsafe", [_group_writable, _world_writable, _other_owner, _a_symlink])
def test_a_store_that_is_not_the_users_alone_is_neither_read_nor_written(built, saved, unsafe):
    root, base, entry, _zip_data = saved
    store = os.path.dirname(entry)
    if unsafe is _other_owner and os.geteuid() != 0:
        pytest.skip("chown needs root")
    unsafe(store)
    real = os.path.realpath(store)
    contents = dict((name, os.stat(os.path.join(real, name)).st_mtime_ns) for name in os.listdir(real))
    assert planted(new_slot(root, base)) is None
    after_build(new_slot(root, base), built[1]).save()
    assert dict((name, os.stat(os.path.join(real, name)).st_mtime_ns) for name in os.listdir(real)) == contents


def test_an_unwritable_or_missing_store_changes_nothing(built, tmp_path):
    root, build_file = built
    base = str(tmp_path)
    blocker = os.path.join(base, "a-file")
    open(blocker, "w").close()
    store = os.path.join(blocker, "payloads")  # ENOTDIR: cannot be made
    assert planted(new_slot(root, base, store)) is None
    slot = after_build(new_slot(root, base, store), build_file)
    slot.save()
    assert os.path.isfile(blocker) and os.path.getsize(blocker) == 0
    assert module_common._CachedModule.load(slot.run_file) == module_common._CachedModule.load(build_file)


def _same_size_new_content(path):
    info = os.stat(path)
    with open(path, "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(b"#" if first != b"#" else b" ")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # size and mtime as recorded: ctime tells


def _mtime_only(path):
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1))


def _replaced_by_a_copy(path):
    shutil.copy2(path, path + ".new")
    os.rename(path + ".new", path)


def _a_new_file_beside(path):
    open(os.path.join(os.path.dirname(path), "shadow.py"), "w").close()


def _an_absent_package_init_appears(path):
    del path
    return "plugins/module_utils/__init__.py"


STALE = [_same_size_new_content, _mtime_only, _replaced_by_a_copy, _a_new_file_beside, _an_absent_package_init_appears]


@pytest.mark.parametrize("change", STALE)
def test_a_changed_source_invalidates_the_entry(built, tmp_path, change):
    _root, build_file = built
    base = str(tmp_path)
    _collections, root = copy_collection(base)
    after_build(new_slot(root, base), build_file).save()
    assert planted(new_slot(root, base)) is not None
    target = os.path.join(root, "plugins", "module_utils", "_runtime", "state.py")
    relative = change(target)
    if relative:
        assert not os.path.exists(os.path.join(root, relative))
        open(os.path.join(root, relative), "w").close()
    assert planted(new_slot(root, base)) is None


def test_a_build_of_files_changed_within_the_racy_window_is_not_kept(built, tmp_path):
    _root, build_file = built
    base = str(tmp_path)
    _collections, root = copy_collection(base)
    target = os.path.join(root, "plugins", "module_utils", "_runtime", "state.py")
    os.utime(target, ns=(os.stat(target).st_atime_ns, os.stat(target).st_mtime_ns))  # ctime: now
    after_build(new_slot(root, base), build_file).save()
    assert not os.path.exists(os.path.join(base, "store", FQN + "-0123456789abcdef.json"))


def test_concurrent_workers_never_plant_a_wrong_payload(built, saved):
    root, base, entry, zip_data = saved
    children = []
    for _child in range(3):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child saves over and over, as workers finishing builds would
            code = 0
            try:
                mine = os.path.join(base, "child-%d" % os.getpid())
                os.mkdir(mine)
                for _round in range(8):
                    after_build(new_slot(root, mine, os.path.join(base, "store")), built[1]).save()
            except BaseException:  # pylint: disable=broad-except
                code = 1
            os._exit(code)
        children.append(pid)
    plants = [planted(new_slot(root, base)) for _round in range(12)]
    assert [os.waitpid(pid, 0)[1] for pid in children] == [0, 0, 0]
    assert all(got is None or got == zip_data for got in plants) and plants.count(zip_data) >= 1
    assert planted(new_slot(root, base)) == zip_data
    assert [name for name in os.listdir(os.path.dirname(entry)) if name.endswith(".part")] == []


# --------------------------------------------------------------------------
# the guards: ansible-core's internals, the switch, which modules

def test_the_internals_are_those_verified_and_drift_turns_the_cache_off(monkeypatch):
    assert cache.internals_verified() is True

    @dataclasses.dataclass
    class MoreFields:
        zip_data: bytes
        metadata: object
        source_mapping: dict
        extra: int

        @classmethod
        def load(cls, path):
            return path

    def moved_cache(**_kwargs):
        return "elsewhere"

    class Drifted:
        _CachedModule = module_common._CachedModule
        ModuleMetadataV1 = module_common.ModuleMetadataV1
        _find_module_utils = module_common._find_module_utils

    assert cache.internals_verified(Drifted) is True
    monkeypatch.setattr(Drifted, "_CachedModule", MoreFields)
    assert cache.internals_verified(Drifted) is False
    monkeypatch.setattr(Drifted, "_CachedModule", module_common._CachedModule)
    monkeypatch.setattr(Drifted, "_find_module_utils", staticmethod(moved_cache))
    assert cache.internals_verified(Drifted) is False
    monkeypatch.delattr(Drifted, "_find_module_utils")
    assert cache.internals_verified(Drifted) is False
    monkeypatch.setattr(release, "__version__", "2.20.0")
    assert cache.internals_verified() is False


def test_slots_only_for_this_collections_modules_when_verified_and_switched_on(built, tmp_path, monkeypatch):
    root, _build_file = built
    monkeypatch.setattr(C, "DEFAULT_LOCAL_TMP", str(tmp_path))
    for variable in (cache.ENV_SWITCH, cache.ENV_DIR):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path / "home"))
    module_path = os.path.join(root, "plugins", "modules", MODULE + ".py")
    slot = cache.slot_for(module_path, "ZIP_DEFLATED", {})
    assert slot.run_file == os.path.join(str(tmp_path), "ansiballz_cache", RUN_NAME)
    assert slot.collection_root == root and slot.entry_name.startswith(FQN + "-")
    assert slot.identity["ansible"] == release.__version__ and slot.identity["module_path"] == module_path
    assert cache.slot_for(module_path, "ZIP_STORED", {}).entry_name != slot.entry_name
    monkeypatch.setenv(cache.ENV_DIR, str(tmp_path / "moved"))
    assert cache.slot_for(module_path, "ZIP_DEFLATED", {}).store_dir == str(tmp_path / "moved")
    ping = os.path.join(os.path.dirname(ansible.__file__), "modules", "ping.py")
    assert cache.slot_for(ping, "ZIP_DEFLATED", {}) is None
    monkeypatch.setattr(cache, "internals_verified", lambda *_args: False)
    assert cache.slot_for(module_path, "ZIP_DEFLATED", {}) is None
    monkeypatch.undo()
    monkeypatch.setattr(C, "DEFAULT_LOCAL_TMP", str(tmp_path))
    for word in ("0", "off", "False", "no"):
        monkeypatch.setenv(cache.ENV_SWITCH, word)
        assert cache.slot_for(module_path, "ZIP_DEFLATED", {}) is None


# Documentation of an action that runs no module on the host (plugins/action/oci_role_preflight.py).
CONTROLLER_ONLY = ("oci_role_preflight",)


def test_every_module_has_an_action_plugin_that_is_the_normal_action_with_the_cache():
    modules = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(REPO, "plugins", "modules", "*.py")))
    actions = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(REPO, "plugins", "action", "*.py")))
    assert modules == actions and len(modules) >= 10
    for name in CONTROLLER_ONLY:
        action = importlib.import_module("ansible_collections.daemonless.oci.plugins.action." + name).ActionModule
        assert not issubclass(action, NormalAction)
        with open(os.path.join(REPO, "plugins", "modules", name + ".py")) as handle:
            code = [node for node in ast.parse(handle.read()).body
                    if not (isinstance(node, ast.Assign) and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN"))]
        assert code == [], "%s documents an action and must hold no code" % name
    for name in sorted(set(modules) - set(CONTROLLER_ONLY)):
        action = importlib.import_module("ansible_collections.daemonless.oci.plugins.action." + name).ActionModule
        assert issubclass(action, NormalAction) and issubclass(action, cache.PayloadCacheMixin)
        assert action.__mro__.index(cache.PayloadCacheMixin) < action.__mro__.index(NormalAction)


def test_nothing_a_managed_host_runs_imports_the_controller_side_cache():
    offenders = []
    for path in glob.glob(os.path.join(REPO, "plugins", "module_utils", "**", "*.py"), recursive=True) + \
            glob.glob(os.path.join(REPO, "plugins", "modules", "*.py")):
        with open(path) as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any("plugin_utils" in name for name in names):
                offenders.append(os.path.relpath(path, REPO))
    assert offenders == []
