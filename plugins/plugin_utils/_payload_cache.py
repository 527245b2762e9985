# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A persistent, content-validated cache of this collection's built AnsiballZ payloads (controller only).

ansible-core builds a module's payload once per playbook run: its own cache
(`{DEFAULT_LOCAL_TMP}/ansiballz_cache/<fqn>-<compression>-<extension key>`, a
pickled `module_common._CachedModule`) lives in the run's private temporary
directory, and the build (the recursive finder parses every module_utils file
the module reaches: 50-85 of ours) was most of what a task of ours cost
(issue 20, bench/README.md). The action plugins of plugins/action/ plant a
build kept from an earlier run where ansible looks for its cache, before the
module is configured, and keep a new build after one.

An entry is used only when every file the payload holds (each zip member
mapped back to its controller path: the collection root for
`ansible_collections/daemonless/oci/...`, ansible's package for `ansible/...`)
still has the recorded size, mtime, ctime, inode and device, the directories
holding them the recorded mtime (a file added beside them could change what
the finder picks), and when ansible-core's version, the controller's
Python, the module's fqn and path, the compression, the extension key and the
settings the build reads are the same. Anything else, and anything unexpected
(a foreign, truncated or corrupt entry, a store that is not the user's alone,
ansible-core internals other than those verified), makes this do nothing:
ansible builds as usual and the entry is replaced when it can be. The store
holds JSON (the zip as base64 with its sha256), never pickle: a pickle is made
only of the data read here, into the run's own directory, as ansible makes
it.

What is kept is ansible's build plus compiled code: beside each of
ansible's own sources in the zip (`ansible/...py`, which the AnsiballZ
wrapper imports before any module code runs, so no cache on the managed host
can serve them) a checked hash-based `.pyc` (PEP 552) compiled here by the
controller's interpreter. zipimport takes a `.pyc` before the `.py` beside
it; a host whose Python has another magic number, or a source whose hash
differs, falls back to the `.py` as without it. That saves the host about 45
ms of CPU per task (compiling `ansible.module_utils.basic` and what it
imports, twice, as zipimport does) when its Python is the controller's; the
cost is a payload about twice as large. Our own module_utils get none: the
host's bytecode cache (module_utils/_ansible/bytecode.py) serves them, for
any host Python. Tracebacks through ansible's code name the zip member
(`ansible/module_utils/basic.py`), not the payload's temporary path.

Environment: DAEMONLESS_OCI_PAYLOAD_CACHE=0 (or false/no/off) disables it;
DAEMONLESS_OCI_PAYLOAD_CACHE_DIR moves the store (default
`{ANSIBLE_HOME}/daemonless.oci/payloads`); DAEMONLESS_OCI_PAYLOAD_BYTECODE=0
keeps builds without the compiled code (for managed hosts whose Python is not
the controller's, behind a slow link, where it would only be sent for
nothing).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import importlib.util
import io
import json
import marshal
import os
import pickle
import stat
import sys
import time
import zipfile

ENV_SWITCH = "DAEMONLESS_OCI_PAYLOAD_CACHE"
ENV_DIR = "DAEMONLESS_OCI_PAYLOAD_CACHE_DIR"
ENV_BYTECODE = "DAEMONLESS_OCI_PAYLOAD_BYTECODE"
# 2: the zip holds compiled code for ansible's own sources (entries of format 1 are rebuilt).
FORMAT = 2
# The ansible-core series whose _CachedModule and cache path this was written against.
VERIFIED_SERIES = (2, 19)
CACHED_MODULE_FIELDS = ("zip_data", "metadata", "source_mapping")
OUR_FQN_PREFIX = "ansible_collections.daemonless.oci.plugins.modules."
OUR_MEMBER_PREFIX = "ansible_collections/daemonless/oci/"
# Sources given compiled code beside them in a kept build: ansible's own (see the docstring).
BYTECODE_MEMBER_PREFIX = "ansible/"
# PEP 552: a hash-based pyc whose source's hash the importer checks before using it.
CHECKED_HASH_PYC_FLAGS = 0b11
# Members recursive_finder writes from its own constants, not from a file: ansible's version covers them.
ANSIBLE_SYNTHESIZED = frozenset(["ansible/__init__.py", "ansible/module_utils/__init__.py"])
# Namespace packages above the collection, written empty by ansible.
EMPTY_NAMESPACE_MEMBERS = frozenset(["ansible_collections/__init__.py", "ansible_collections/daemonless/__init__.py"])
MAX_ENTRY_BYTES = 64 * 1024 * 1024
# A file changed this recently may change again within the file system's timestamp granularity
# with the same size and times (git's "racily clean" entries): such a build is not kept.
RACY_NS = 1_000_000_000
OFF_WORDS = ("0", "false", "no", "off")


class Skip(Exception):
    """The cache cannot be used here; ansible builds as usual. The message says why (shown at -vvvv)."""


def _display():
    from ansible.utils.display import Display  # pylint: disable=import-outside-toplevel
    return Display()


def _note(message):
    _display().vvvv("daemonless.oci payload cache: %s" % message)


def internals_verified(module_common=None):
    """True when ansible-core's payload cache is the one this was written against (2.19's), else False."""
    # pylint: disable=import-outside-toplevel
    from ansible import release
    if module_common is None:
        from ansible.executor import module_common
    try:
        series = tuple(int(part) for part in release.__version__.split(".")[:2])
        cached = module_common._CachedModule  # pylint: disable=protected-access
        fields = tuple(field.name for field in dataclasses.fields(cached))
        metadata_fields = tuple(field.name for field in dataclasses.fields(module_common.ModuleMetadataV1))
        code = module_common._find_module_utils.__code__  # pylint: disable=protected-access
    except (AttributeError, TypeError, ValueError):
        return False
    # The cache path is os.path.join(C.DEFAULT_LOCAL_TMP, 'ansiballz_cache') / '-'.join((fqn, compression,
    # extension key)), the key '~'.join(extension names) or 'none', and the entry loaded with _CachedModule.load.
    return (series == VERIFIED_SERIES and fields == CACHED_MODULE_FIELDS and metadata_fields == ("serialization_profile",)
            and callable(getattr(cached, "load", None))
            and {"ansiballz_cache", "-", "~", "none"} <= set(code.co_consts)
            and {"DEFAULT_LOCAL_TMP", "_CachedModule", "extension_names", "ExtensionManager"} <= set(code.co_names))


def enabled():
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in OFF_WORDS


def bytecode_enabled():
    return os.environ.get(ENV_BYTECODE, "").strip().lower() not in OFF_WORDS


def store_path():
    """The store's directory: $DAEMONLESS_OCI_PAYLOAD_CACHE_DIR, else {ANSIBLE_HOME}/daemonless.oci/payloads."""
    moved = os.environ.get(ENV_DIR)
    if moved:
        return os.path.abspath(os.path.expanduser(moved))
    from ansible import constants as C  # pylint: disable=import-outside-toplevel
    return os.path.join(os.path.expanduser(C.config.get_config_value("ANSIBLE_HOME")), "daemonless.oci", "payloads")


def open_store(path, create):
    """A descriptor of the store directory PATH, if it is a directory (not a link) owned by this user and
    writable by no one else; with CREATE, made (0700) when missing. Raises Skip otherwise."""
    if create and not os.path.lexists(path):
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # another worker made it: it is checked below like any other
        except OSError as error:
            raise Skip("cannot create the store %s: %s" % (path, error.strerror))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise Skip("no usable store at %s: %s" % (path, error.strerror))
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise Skip("the store %s is not this user's alone (owner %d, mode %o): not used"
                   % (path, info.st_uid, stat.S_IMODE(info.st_mode)))
    return fd


def _file_identity(info):
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


def _dir_identity(info):
    return [info.st_mtime_ns, info.st_ino, info.st_dev]


def _stat_or_none(path):
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


@dataclasses.dataclass
class Slot:
    """One module's payload in one task: where ansible's run looks for it, and its entry in the store."""
    identity: dict
    run_file: str
    store_dir: str
    entry_name: str
    collection_root: str
    ansible_dir: str
    planted: bool = False
    run_file_existed: bool = False

    # --- plant: store -> the run's temporary directory

    def plant(self):
        """Put the stored build where ansible looks for it, if the entry is valid. Never raises."""
        try:
            self.run_file_existed = os.path.exists(self.run_file)
            if self.run_file_existed:
                return  # built or planted earlier in this run
            entry = self._read_entry()
            cached = self._validated(entry)
            self._write_run_file(cached)
            self.planted = True
            _note("used %s" % self.entry_name)
        except Skip as reason:
            _note(str(reason))
        except Exception as error:  # pylint: disable=broad-except
            # Whatever went wrong, the normal build still runs: a cache must never fail a task.
            _note("not used (%s: %s)" % (type(error).__name__, error))

    def _read_entry(self):
        fd = open_store(self.store_dir, create=False)
        try:
            try:
                entry_fd = os.open(self.entry_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                                   dir_fd=fd)
            except FileNotFoundError:
                raise Skip("no entry %s yet" % self.entry_name)
            except OSError as error:  # ELOOP: a symlinked entry
                raise Skip("entry %s not opened: %s" % (self.entry_name, error.strerror))
            with os.fdopen(entry_fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_size > MAX_ENTRY_BYTES:
                    raise Skip("entry %s is not a regular file of this user's" % self.entry_name)
                data = handle.read(MAX_ENTRY_BYTES + 1)
        finally:
            os.close(fd)
        try:
            entry = json.loads(data)
        except ValueError:
            raise Skip("entry %s is not JSON" % self.entry_name)
        if not isinstance(entry, dict):
            raise Skip("entry %s is not an object" % self.entry_name)
        return entry

    def _validated(self, entry):
        """ansible's _CachedModule for ENTRY if ENTRY is this build and all its sources are unchanged."""
        if entry.get("format") != FORMAT or entry.get("identity") != self.identity:
            raise Skip("entry %s is for another build" % self.entry_name)
        files, absent, dirs = entry.get("files"), entry.get("absent"), entry.get("dirs")
        if not (isinstance(files, dict) and isinstance(absent, list) and isinstance(dirs, dict)):
            raise Skip("entry %s is malformed" % self.entry_name)
        for path, recorded in files.items():
            info = _stat_or_none(path)
            if info is None or _file_identity(info) != recorded:
                raise Skip("%s changed" % path)
        for path in absent:
            if not isinstance(path, str) or os.path.lexists(path):
                raise Skip("%s appeared" % path)
        for path, recorded in dirs.items():
            info = _stat_or_none(path)
            if info is None or _dir_identity(info) != recorded:
                raise Skip("directory %s changed" % path)
        zip_data, digest = entry.get("zip_data"), entry.get("zip_sha256")
        profile, mapping = entry.get("serialization_profile"), entry.get("source_mapping")
        if not (isinstance(zip_data, str) and isinstance(digest, str) and isinstance(profile, str)
                and isinstance(mapping, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())):
            raise Skip("entry %s is malformed" % self.entry_name)
        raw = zip_data.encode("ascii")
        if hashlib.sha256(raw).hexdigest() != digest:
            raise Skip("entry %s fails its digest" % self.entry_name)
        try:
            base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise Skip("entry %s holds no base64" % self.entry_name)
        from ansible.executor import module_common  # pylint: disable=import-outside-toplevel
        # pylint: disable-next=protected-access
        return module_common._CachedModule(zip_data=raw, metadata=module_common.ModuleMetadataV1(serialization_profile=profile),
                                           source_mapping=mapping)

    def _write_run_file(self, cached):
        # As _CachedModule.dump writes it, but through a name of this process's own: two workers may plant
        # the same module at once, and ansible loads the file as soon as it exists.
        directory = os.path.dirname(self.run_file)
        os.makedirs(directory, exist_ok=True)
        temporary = "%s.%d.daemonless-part" % (self.run_file, os.getpid())
        try:
            with open(temporary, "wb") as handle:
                pickle.dump(cached, handle)
            os.replace(temporary, self.run_file)
        except BaseException:
            _unlink_quietly(temporary)
            raise

    # --- save: a build of this run -> the store

    def save(self):
        """Keep the build ansible just made in the store. Never raises."""
        if self.planted or self.run_file_existed:
            return
        try:
            entry, cached = self._entry_of_build()
            self._write_entry(entry)
            _note("kept %s" % self.entry_name)
            # The rest of this run's tasks of this module take the build with compiled code too.
            self._write_run_file(cached)
        except Skip as reason:
            _note("build not kept: %s" % reason)
        except Exception as error:  # pylint: disable=broad-except
            _note("build not kept (%s: %s)" % (type(error).__name__, error))

    def _entry_of_build(self):
        from ansible.executor import module_common  # pylint: disable=import-outside-toplevel
        if not os.path.exists(self.run_file):
            raise Skip("ansible made no cache file")
        cached = module_common._CachedModule.load(self.run_file)  # pylint: disable=protected-access
        if not isinstance(cached.metadata, module_common.ModuleMetadataV1):
            raise Skip("unknown module metadata %r" % type(cached.metadata).__name__)
        zip_data = bytes(cached.zip_data)
        started = time.time_ns()
        files, absent, dirs = {}, [], {}
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(zip_data))) as archive:
            for member in archive.infolist():
                content = archive.read(member)
                path = self._source_of(member.filename, content)
                if path is None:
                    continue
                before = _stat_or_none(path)
                if before is None:
                    if not (member.filename.endswith("/__init__.py") and content == b""):
                        raise Skip("%s is in the payload but not at %s" % (member.filename, path))
                    absent.append(path)
                else:
                    with open(path, "rb") as handle:
                        on_disk = handle.read()
                    after = os.stat(path)
                    if on_disk != content or _file_identity(before) != _file_identity(after):
                        raise Skip("%s is not what the payload holds (changed while building?)" % path)
                    if max(after.st_ctime_ns, after.st_mtime_ns) > started - RACY_NS:
                        raise Skip("%s changed less than a second ago" % path)
                    files[path] = _file_identity(after)
                parent = os.path.dirname(path)
                if parent not in dirs:
                    dirs[parent] = _dir_identity(os.stat(parent))
        if self.identity.get("bytecode", True):
            zip_data = base64.b64encode(with_bytecode(base64.b64decode(zip_data)))
        entry = {"format": FORMAT, "identity": self.identity, "files": files, "absent": sorted(absent), "dirs": dirs,
                 "zip_sha256": hashlib.sha256(zip_data).hexdigest(), "zip_data": zip_data.decode("ascii"),
                 "serialization_profile": cached.metadata.serialization_profile,
                 "source_mapping": dict(cached.source_mapping)}
        return entry, dataclasses.replace(cached, zip_data=zip_data)

    def _source_of(self, member, content):
        """The controller path MEMBER was read from, or None for a member ansible writes itself."""
        parts = member.split("/")
        if member.startswith("/") or ".." in parts or "" in parts:
            raise Skip("unexpected member %r" % member)
        if member in ANSIBLE_SYNTHESIZED:
            return None
        if member in EMPTY_NAMESPACE_MEMBERS:
            if content:
                raise Skip("%s is not empty" % member)
            return None
        if member.startswith(OUR_MEMBER_PREFIX):
            return os.path.join(self.collection_root, member[len(OUR_MEMBER_PREFIX):])
        if member.startswith("ansible/"):
            return os.path.join(self.ansible_dir, member[len("ansible/"):])
        raise Skip("%s comes from elsewhere" % member)

    def _write_entry(self, entry):
        data = json.dumps(entry, sort_keys=True).encode()
        fd = open_store(self.store_dir, create=True)
        temporary = ".%s.%d.%s.part" % (self.entry_name, os.getpid(), base64.b32encode(os.urandom(5)).decode())
        try:
            out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
            # rename() replaces a symlink planted under the entry's name, never what it points to.
            os.rename(temporary, self.entry_name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as error:
            _unlink_quietly(temporary, fd)
            raise Skip("cannot write to the store %s: %s" % (self.store_dir, error.strerror))
        finally:
            os.close(fd)


def with_bytecode(payload):
    """PAYLOAD (a module's zip, as ansible built it) with a checked hash-based .pyc, compiled by this
    interpreter, after each source under BYTECODE_MEMBER_PREFIX; every member of PAYLOAD is kept as it is."""
    magic = importlib.util.MAGIC_NUMBER + CHECKED_HASH_PYC_FLAGS.to_bytes(4, "little")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(payload)) as source, zipfile.ZipFile(out, "w") as target:
        names = set(source.namelist())
        for member in source.infolist():
            data = source.read(member)
            target.writestr(member, data)
            compiled = member.filename[:-3] + ".pyc"
            if not (member.filename.startswith(BYTECODE_MEMBER_PREFIX) and member.filename.endswith(".py")) \
                    or compiled in names:
                continue
            try:
                # optimize=0: what a host interpreter started without -O would compile.
                code = compile(data, member.filename, "exec", dont_inherit=True, optimize=0)
            except (SyntaxError, ValueError):
                continue  # the host compiles it, or fails on it, as without this
            pyc = zipfile.ZipInfo(compiled, date_time=member.date_time)
            pyc.compress_type = member.compress_type
            pyc.external_attr = member.external_attr
            target.writestr(pyc, magic + importlib.util.source_hash(data) + marshal.dumps(code))
    return out.getvalue()


def _unlink_quietly(path, dir_fd=None):
    try:
        os.unlink(path, dir_fd=dir_fd)
    except OSError:
        pass


def slot_for(module_path, module_compression, task_vars):
    """The Slot of the module at MODULE_PATH if it is one of this collection's and the cache can run here;
    None otherwise (the caller then does what ansible does without the cache)."""
    if not enabled():
        return None
    fqn = _fqn(module_path)
    if fqn is None or not fqn.startswith(OUR_FQN_PREFIX):
        return None
    # pylint: disable=import-outside-toplevel
    import ansible
    from ansible import constants as C
    from ansible import release
    from ansible.executor import module_common
    from ansible._internal._ansiballz import _builder
    if not internals_verified(module_common):
        _note("ansible-core %s's payload cache is not the one verified (2.19): not used" % release.__version__)
        return None
    extension_manager = _builder.ExtensionManager.create(task_vars=task_vars)
    names = extension_manager.extension_names
    extension_key = "~".join(names) if names else "none"
    module_path = os.path.abspath(module_path)
    identity = {
        "ansible": release.__version__,
        "python": [sys.executable, sys.version],
        "fqn": fqn,
        "module_path": module_path,
        "compression": module_compression,
        "extension_key": extension_key,
        # What else the build reads: module METADATA parsing, and module_utils directories that can shadow ansible's.
        "module_metadata": repr(C.config.get_config_value("_MODULE_METADATA")),
        "module_utils_paths": repr(C.config.get_config_value("DEFAULT_MODULE_UTILS_PATH")),
        # A build kept with compiled code or without (DAEMONLESS_OCI_PAYLOAD_BYTECODE): two entries.
        "bytecode": bytecode_enabled(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    run_file = os.path.join(C.DEFAULT_LOCAL_TMP, "ansiballz_cache", "-".join((fqn, module_compression, extension_key)))
    collection_root = os.path.dirname(os.path.dirname(os.path.dirname(module_path)))
    return Slot(identity=identity, run_file=run_file, store_dir=store_path(), entry_name="%s-%s.json" % (fqn, key),
                collection_root=collection_root, ansible_dir=os.path.dirname(os.path.abspath(ansible.__file__)))


def _fqn(module_path):
    from ansible.executor import module_common  # pylint: disable=import-outside-toplevel
    try:
        return module_common._get_ansible_module_fqn(module_path)  # pylint: disable=protected-access
    except (ValueError, AttributeError, TypeError):
        return None


class PayloadCacheMixin:
    """Mixed into an ActionModule (before ansible's `normal`): everything else is the normal action's."""

    def _configure_module(self, module_name, module_args, task_vars):
        slot = self._payload_slot(module_name, task_vars)
        if slot is not None:
            slot.plant()
        result = super()._configure_module(module_name, module_args, task_vars)
        if slot is not None:
            slot.save()
        return result

    def _payload_slot(self, module_name, task_vars):
        try:
            from ansible import constants as C  # pylint: disable=import-outside-toplevel
            found = self._shared_loader_obj.module_loader.find_plugin_with_context(
                module_name, ".py", collection_list=self._task.collections)
            if not found.resolved or not found.plugin_resolved_path:
                return None
            use_vars = task_vars
            if self._task.delegate_to:
                use_vars = task_vars.get("ansible_delegated_vars")[self._task.delegate_to]
            compression = C.config.get_config_value("DEFAULT_MODULE_COMPRESSION", variables=task_vars)
            return slot_for(found.plugin_resolved_path, compression, use_vars)
        except Exception as error:  # pylint: disable=broad-except
            _note("not used (%s: %s)" % (type(error).__name__, error))
            return None
