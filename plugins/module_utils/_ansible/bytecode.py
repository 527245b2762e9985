# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compiled code of the modules' imports kept on the managed host between module runs.

Ansible ships a module's module_utils as sources in a zip (AnsiballZ), and
zipimport never caches bytecode: it compiles each module twice (get_filename
compiles to name the file, get_code again to run it) on every task.
install() makes the payload's imports go through a subclass of zipimport's
own importer that names the file without compiling and takes the code
object from CACHE_DIR, one file per source, named by the interpreter's
cache tag and the source's sha256, its header holding the interpreter's
magic number and that digest again. Everything else is zipimport's: the
loader *is* a zipimporter (`archive`, `prefix`, get_source, get_data,
get_resource_reader), so what reads the payload through its loader (the
monitor's runtime snapshot, the monitor's and the network hook's sources)
sees the zip as without the cache; and each read opens and closes the zip
as zipimport does, so no descriptor of it stays open (create's monitor
closes every descriptor, then imports).

What is unmarshalled is code run as root, so the cache is used only by root
and only when root alone can write it: every component of CACHE_DIR's path
is lstat'ed (a real directory, root's, writable by no group or other), and
each file is opened without following a symlink and used only when it is a
regular file of root's with the same modes whose header matches. Anything
else is compiled, as without the cache; a directory that is not root's alone
is neither read nor written. CACHE_DIR is outside every state root (it is
no container's state). New entries are written only once the module allows
it (persist(): never in check mode, which changes no file), atomically.

Nothing here may import the collection's other code: it runs before it.
"""
import os
import sys
import zipimport

CACHE_DIR = "/var/cache/ocirt/bytecode"
_TAG = sys.implementation.cache_tag or "python"
_DIGEST_SIZE = 32


def _root_alone(st, kind):
    return kind(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


def trusted(directory, missing_ok=True):
    """Whether DIRECTORY and each directory above it is a real directory only root can write
    (a component not made yet passes when MISSING_OK: it will be made so)."""
    import stat
    if os.geteuid() != 0 or not os.path.isabs(directory):
        return False
    path = "/"
    for part in [p for p in directory.split("/") if p] + [None]:
        try:
            if not _root_alone(os.lstat(path), stat.S_ISDIR):
                return False
        except FileNotFoundError:
            return missing_ok
        except OSError:
            return False
        if part is None:
            return True
        path = os.path.join(path, part)
    return True


class Cache(object):
    """The code objects of CACHE_DIR (or DIRECTORY), read when trusted, written once allowed."""

    def __init__(self, directory=CACHE_DIR):
        import importlib.util
        self.directory = directory
        self.magic = importlib.util.MAGIC_NUMBER
        self.pending = {}  # file name -> (digest, code) compiled while writing is not allowed yet
        self.writable = False
        self.hits = self.misses = 0

    def code(self, source, filename):
        import hashlib
        digest = hashlib.sha256(source).digest()
        name = "%s-%s.code" % (_TAG, digest.hex())
        code = self._read(name, digest)
        if code is not None:
            import _imp
            # The payload's temporary path differs on every run: tracebacks name this one.
            _imp._fix_co_filename(code, filename)
            self.hits += 1
            return code
        self.misses += 1
        code = compile(source, filename, "exec", dont_inherit=True)
        self.pending[name] = (digest, code)
        if self.writable:
            self.flush()
        return code

    def _read(self, name, digest):
        import marshal
        import stat
        try:
            fd = os.open(os.path.join(self.directory, name),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not _root_alone(os.fstat(fd), stat.S_ISREG):
                return None
            with os.fdopen(fd, "rb") as handle:
                fd = None
                data = handle.read()
            header = self.magic + digest
            if not data.startswith(header):
                return None  # another interpreter's, or another source's: never run it
            code = marshal.loads(data[len(header):])
            return code if isinstance(code, type(_root_alone.__code__)) else None
        except (OSError, ValueError, EOFError, TypeError):
            return None  # unreadable or not code: compiled, and written again
        finally:
            if fd is not None:
                os.close(fd)

    def flush(self):
        """Write what was compiled and not written yet, when the directory is (made) root's alone."""
        import marshal
        pending, self.pending = self.pending, {}
        if not pending or not trusted(self.directory):
            return
        # Each missing component made 0700 (makedirs gives the parents the umask's modes, which may let
        # others write them, and the cache would then never be trusted).
        path = "/"
        for part in [p for p in self.directory.split("/") if p]:
            path = os.path.join(path, part)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError:
                return
        if not trusted(self.directory, missing_ok=False):
            return
        for name, (digest, code) in pending.items():
            temporary = os.path.join(self.directory, ".%s.%d" % (name, os.getpid()))
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(self.magic + digest + marshal.dumps(code))
                os.rename(temporary, os.path.join(self.directory, name))
            except OSError:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass


class CachingZipImporter(zipimport.zipimporter):
    """zipimport's importer, its code from the cache (a payload of sources, as AnsiballZ ships)."""

    cache = None  # set by install()

    def _source_path(self, fullname):
        base = self.prefix + fullname.rpartition(".")[2]
        return os.path.join(self.archive, base + ("/__init__.py" if self.is_package(fullname) else ".py"))

    def get_filename(self, fullname):
        path = self._source_path(fullname)
        if path[len(self.archive) + 1:] in _members(self):
            return path  # zipimport's own __file__ for a source member, found without compiling it
        return super().get_filename(fullname)

    def get_code(self, fullname):
        path = self._source_path(fullname)
        if self.cache is None or path[len(self.archive) + 1:] not in _members(self):
            return super().get_code(fullname)
        return self.cache.code(self.get_data(path), path)


def _members(importer):
    # zipimport's table of the archive's members (read once per archive, shared by its importers);
    # where an interpreter's zipimport keeps it elsewhere, nothing is served from the cache.
    files = getattr(importer, "_get_files", None)
    return (files() if files is not None else getattr(importer, "_files", None)) or ()


def install(directory=CACHE_DIR, archive=None):
    """Serve the imports from the payload zip ARCHIVE (default: the one this module came from) with
    code from the cache from now on; return the cache, or None when not used: not root, not run from
    a zip, or a cache directory that is not root's alone."""
    for hook in sys.path_hooks:
        if getattr(hook, "bytecode_cache", None) is not None:
            return hook.bytecode_cache
    if archive is None:
        archive = getattr(globals().get("__loader__"), "archive", None)
    if archive is None or not trusted(directory):
        return None  # imported from files (tests, a checkout): Python's own cache applies
    cache = Cache(directory)
    importer = type("CachingZipImporter", (CachingZipImporter,), {"cache": cache})

    def hook(path):
        if path == archive or path.startswith(archive + "/"):
            return importer(path)
        raise ImportError("not in %s" % archive)
    hook.bytecode_cache = cache
    sys.path_hooks.insert(0, hook)
    # Paths of the zip already looked at keep plain zipimporters: looked at again through the hook.
    for path in list(sys.path_importer_cache):
        if path == archive or path.startswith(archive + "/"):
            del sys.path_importer_cache[path]
    return cache


def persist(cache, allowed):
    """Write what was compiled so far and from now on, when ALLOWED (not in check mode)."""
    if cache is not None and allowed:
        cache.writable = True
        cache.flush()
