# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_image's work: pull a name into the store, remove it, describe it.

A pull resolves the name at the registry (an index or manifest list is
narrowed to the platform), fetches the config and every layer blob the
store lacks, each verified before it is admitted, and only then points the
name at the image: an interrupted or refused pull leaves the name as it was
and nothing unverified in the store. The whole pull holds the store's lock:
a second pull of the same name waits, then finds it present.

Layers download in parallel (LAYER_THREADS): TLS, hashing, writing and
fsync all release the interpreter lock, and a single stream left the
registry idle between blobs. A caller may pass `unpack` (oci_image passes
the overlay layer writer of _bundle, which this package must not import):
each layer is unpacked into the store in its download's thread as soon as
its blob is admitted, so the first container from the image does not wait
for it, as podman unpacks while it pulls. At most LAYER_THREADS downloads
run at once, but an unpack does not hold a download's place: a base layer
of a few hundred symlinks and small files takes longer to unpack than an
8 MiB layer to download, and the next download starts meanwhile.

The registry client (and with it Ansible's HTTP stack, about 0.3 s of
imports) is imported only when the registry is asked: a pull that finds its
image present reads one JSON file.
"""
import base64
import hashlib
import json
import os
import threading
import time

from ansible_collections.daemonless.oci.plugins.module_utils._image import media
from ansible_collections.daemonless.oci.plugins.module_utils._image import reference as references
from ansible_collections.daemonless.oci.plugins.module_utils._image.platform import (
    platform_matches, platform_text, want_platform)
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store, digest_hex
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

MAX_CONFIG = 8 << 20
MAX_LAYERS = 512
LAYER_THREADS = 4
INDEX_MEDIA = (media.MEDIA_OCI_INDEX, media.MEDIA_DOCKER_LIST)
MANIFEST_MEDIA = (media.MEDIA_OCI_MANIFEST, media.MEDIA_DOCKER_MANIFEST)
CONFIG_MEDIA = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
LAYER_MEDIA = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)


def _client():
    from ansible_collections.daemonless.oci.plugins.module_utils._image import client
    return client


def _json(data, what):
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise OCIError("%s: not JSON: %s" % (what, exc))
    if not isinstance(value, dict):
        raise OCIError("%s: not a JSON object" % what)
    return value


def _descriptor(desc, what, media=None, limit=None):
    if not isinstance(desc, dict):
        raise OCIError("%s: not a descriptor" % what)
    digest_hex(desc.get("digest"), what + ".digest")
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OCIError("%s.size: %r is not a byte count" % (what, size))
    if limit is not None and size > limit:
        raise OCIError("%s: %d bytes, more than the %d accepted" % (what, size, limit))
    if media is not None and desc.get("mediaType") not in media:
        raise OCIError("%s: media type %r is not one of %s" % (what, desc.get("mediaType"), ", ".join(media)))
    return desc


def credentials(ref, username=None, password=None, auth_file=None):
    """(username, password): the options, else the auth file's entry for REF's registry."""
    if username:
        return username, password
    if not auth_file:
        return None, None
    try:
        with open(auth_file) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise OCIError("auth_file %s: %s" % (auth_file, getattr(exc, "strerror", None) or exc))
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None, None
    keys = [ref.registry, "https://" + ref.registry, "http://" + ref.registry]
    if ref.registry == references.DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"]
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, sep, secret = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                raise OCIError("auth_file %s: the entry for %s is not base64 of user:password" % (auth_file, key))
            if sep:
                return user, secret
    return None, None


def containers_by_bundle(state_root):
    """{bundle directory: [container ids]} of the containers in STATE_ROOT (none when it does not exist)."""
    by_bundle = {}
    if state_root and os.path.isdir(state_root):
        # state.py, not lifecycle.py: reading the states is all this needs, and a payload ships what is reached.
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import list_containers
        for state in list_containers(state_root):
            by_bundle.setdefault(state.get("bundle"), []).append(state["id"])
    return by_bundle


def containers_using(bundles, state_root, by_bundle=None):
    """Ids of STATE_ROOT's containers whose bundle is one of BUNDLES (BY_BUNDLE: containers_by_bundle's answer,
    when the caller has it already)."""
    if not bundles:
        return []  # an unused image: no reason to read the state root
    if by_bundle is None:
        by_bundle = containers_by_bundle(state_root)
    return sorted(c for bundle in bundles for c in by_bundle.get(bundle, []))


def summary(name, record, store=None, state_root=None, by_bundle=None):
    """What oci_image returns about the image RECORD; with STATE_ROOT (or BY_BUNDLE), the containers using it
    too."""
    config = record.get("image_config") or {}
    result = dict(name=name, digest=record.get("digest"), manifest_digest=record.get("manifest"),
                  config_digest=record.get("config"), size=record.get("size"), platform=record.get("platform"),
                  config=dict(entrypoint=config.get("Entrypoint"), cmd=config.get("Cmd"), env=config.get("Env"),
                              user=config.get("User"), working_dir=config.get("WorkingDir"),
                              exposed_ports=sorted((config.get("ExposedPorts") or {}).keys()),
                              labels=config.get("Labels") or {}),
                  layers=[layer["digest"] for layer in record.get("layers", [])])
    if store is not None:
        result["used_by"] = store.users_of(name, record)
        if state_root is not None or by_bundle is not None:
            result["containers"] = containers_using(result["used_by"], state_root, by_bundle)
    return result


class Puller(object):
    def __init__(self, store, ref, platform=None, username=None, password=None, validate_certs=True,
                 ca_path=None, timeout=media.DEFAULT_TIMEOUT, unpack=None):
        self.store = store
        self.ref = ref
        self.platform = want_platform(platform)
        self.unpack = unpack
        self.warnings = []
        self.client = _client().Registry(ref.api_host, username=username, password=password,
                                         validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)
        self.client.ping()

    def remote_digest(self):
        """The digest the name resolves to at the registry now (HEAD; GET when the registry omits it)."""
        if self.ref.digest:
            return self.ref.digest
        _body, _media, digest = self.client.manifest(self.ref.repository, self.ref.tag, head=True)
        if digest is None:
            _body, _media, digest = self.client.manifest(self.ref.repository, self.ref.tag)
        return digest

    def resolve(self):
        """(top digest, top body, manifest digest, manifest body, manifest dict)."""
        repo = self.ref.repository
        body, media, digest = self.client.manifest(repo, self.ref.reference)
        top = (digest, body)
        value = _json(body, "manifest %s" % digest)
        media = value.get("mediaType") or media
        if media in INDEX_MEDIA or (not value.get("layers") and isinstance(value.get("manifests"), list)):
            entries = value.get("manifests")
            if not isinstance(entries, list):
                raise OCIError("index %s of %s: no manifests list" % (digest, self.ref))
            chosen = None
            for position, entry in enumerate(entries):
                _descriptor(entry, "index %s manifests[%d]" % (digest, position))
                if chosen is None and platform_matches(self.platform, entry.get("platform")):
                    chosen = entry
            if chosen is None:
                offered = ", ".join(platform_text(e.get("platform")) for e in entries) or "none"
                raise OCIError("%s: no image for platform %s; the index has: %s"
                               % (self.ref, platform_text(self.platform), offered))
            if chosen.get("mediaType") not in MANIFEST_MEDIA:
                raise OCIError("index %s of %s: the %s entry's media type %r is not an image manifest"
                               % (digest, self.ref, platform_text(self.platform), chosen.get("mediaType")))
            body, media, digest = self.client.manifest(repo, chosen["digest"])
            value = _json(body, "manifest %s" % digest)
            media = value.get("mediaType") or media
        if media not in MANIFEST_MEDIA:
            raise OCIError("manifest %s of %s: media type %r is not an image manifest" % (digest, self.ref, media))
        return top[0], top[1], digest, body, value

    def fetch(self, desc, what):
        """Blob DESC into the store unless present; True when downloaded."""
        if self.store.has_blob(desc["digest"], desc["size"]):
            return False
        with self.store.new_blob(desc["digest"]) as handle:
            hashed = self.client.fetch_blob(self.ref.repository, desc["digest"], desc["size"], handle)
            self.store.admit(handle, desc["digest"], hashed)
        return True

    def _layer(self, layer, label):
        """Fetch one layer (LAYER: the record's entry) and unpack it when asked; (downloaded, warnings).

        The layer's diff_id comes from the image config, which the caller fetches meanwhile: the
        unpack waits for it, and does not happen when the config was refused."""
        with self._downloads:
            downloaded = self.fetch(dict(digest=layer["digest"], size=layer["size"]), label)
        warnings = []
        self._config_read.wait()
        if self.unpack is not None and not self._config_refused:
            try:
                warnings = self.unpack(self.store, layer, label)
            except Exception:
                if downloaded:
                    # Its digest matched, its content did not unpack (or not to its diff_id): the
                    # layer is refused whole, blob and all.
                    os.unlink(self.store.blob_path(layer["digest"]))
                raise
        return downloaded, warnings

    def start_layers(self, entries, label):
        """Start fetching every layer of ENTRIES (record entries), LAYER_THREADS at a time; what
        finish_layers takes. Each distinct blob is handled once."""
        work, seen = [], set()
        for position, layer in enumerate(entries):
            if layer["digest"] not in seen:
                seen.add(layer["digest"])
                work.append((position, layer))
        results = {}
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not work:
                        return
                    position, layer = work.pop(0)
                try:
                    what = "%s layers[%d] %s" % (label, position, layer["digest"])
                    results[position] = (True, self._layer(layer, what))
                except Exception as exc:  # re-raised in the caller's thread, below
                    results[position] = (False, exc)

        self._downloads = threading.BoundedSemaphore(LAYER_THREADS)
        # Twice as many threads as downloads: a thread unpacking its layer leaves its download's
        # place to another.
        threads = [threading.Thread(target=worker, name="layer-%d" % n, daemon=True)
                   for n in range(min(2 * LAYER_THREADS if self.unpack is not None else LAYER_THREADS, len(work)))]
        for thread in threads:
            thread.start()
        return threads, results

    def finish_layers(self, started, entries):
        """The digests downloaded, once every thread of STARTED has finished; the first failure (in
        layer order) is raised only then, so nothing is still writing into the store when the
        caller cleans up."""
        threads, results = started
        for thread in threads:
            thread.join()
        downloaded = []
        for position in sorted(results):
            ok, value = results[position]
            if not ok:
                raise value
            if value[0]:
                downloaded.append(entries[position]["digest"])
            self.warnings.extend(value[1])
        return downloaded

    def pull(self):
        """The image record, everything it names in the store; (record, downloaded blob digests)."""
        top_digest, top_body, digest, body, manifest = self.resolve()
        label = "manifest %s of %s" % (digest, self.ref)
        config_desc = _descriptor(manifest.get("config"), label + " config", CONFIG_MEDIA, MAX_CONFIG)
        layers = manifest.get("layers")
        if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
            raise OCIError("%s: layers must be a list of at most %d descriptors" % (label, MAX_LAYERS))
        for position, layer in enumerate(layers):
            _descriptor(layer, "%s layers[%d]" % (label, position), LAYER_MEDIA)
        # The layers download while the config is fetched and checked (one round trip less before
        # the first layer's request); their diff_ids, which the unpack needs, come from the config.
        entries = [dict(digest=layer["digest"], size=layer["size"], media_type=layer["mediaType"], diff_id=None)
                   for layer in layers]
        self._config_read, self._config_refused = threading.Event(), False
        had = set(desc["digest"] for desc in entries + [config_desc] if self.store.has_blob(desc["digest"]))
        started = self.start_layers(entries, label)
        try:
            downloaded, config = self._config(config_desc, label, entries)
        except BaseException:
            self._config_refused = True
            self._config_read.set()
            try:
                self.finish_layers(started, entries)
            except Exception:  # the config's refusal is the error to report
                pass
            # Downloaded only because the config was expected to be good: nothing of this pull stays.
            for desc in entries + [config_desc]:
                if desc["digest"] not in had and self.store.has_blob(desc["digest"]):
                    os.unlink(self.store.blob_path(desc["digest"]))
            raise
        self._config_read.set()
        downloaded.extend(self.finish_layers(started, entries))
        if self.store.put_bytes(digest, body):
            downloaded.append(digest)
        if top_digest != digest and self.store.put_bytes(top_digest, top_body):
            downloaded.append(top_digest)
        image_config = config.get("config") if isinstance(config.get("config"), dict) else {}
        record = dict(
            digest=top_digest, manifest=digest, config=config_desc["digest"], layers=entries,
            platform=platform_text(dict((k, config.get(k)) for k in ("os", "architecture", "variant")
                                        if config.get(k))),
            size=len(body) + config_desc["size"] + sum(layer["size"] for layer in layers),
            image_config=image_config, pulled=int(time.time()))
        return record, downloaded

    def _config(self, config_desc, label, entries):
        """Fetch and check the image config; ENTRIES get their diff_ids. ([config digest if downloaded], config)."""
        downloaded = []
        if self.fetch(config_desc, label + " config"):
            downloaded.append(config_desc["digest"])
        config = _json(self.store.read_blob(config_desc["digest"], MAX_CONFIG), "config " + config_desc["digest"])
        rootfs = config.get("rootfs") if isinstance(config.get("rootfs"), dict) else {}
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(entries):
            raise OCIError("config %s of %s: rootfs.diff_ids must list one digest per layer (%d layers)"
                           % (config_desc["digest"], self.ref, len(entries)))
        for position, diff_id in enumerate(diff_ids):
            digest_hex(diff_id, "config %s rootfs.diff_ids[%d]" % (config_desc["digest"], position))
        if not platform_matches(self.platform, dict((k, config.get(k)) for k in ("os", "architecture", "variant"))):
            raise OCIError("%s: the image is for %s, not %s" % (
                self.ref, platform_text(dict((k, config.get(k)) for k in ("os", "architecture", "variant")
                                             if config.get(k))), platform_text(self.platform)))
        for position, entry in enumerate(entries):
            entry["diff_id"] = diff_ids[position]
        return downloaded, config


class _NothingDownloaded(object):
    downloaded = 0


class Importer(Puller):
    """A Puller whose blobs come from a directory (files named by their sha256 hex) instead of a registry:
    what container_image_via_controller copied from the controller's store. The same checks apply; a
    blob the store has already is not read from the directory at all."""

    def __init__(self, store, ref, import_dir, top_digest, manifest_digest, platform=None):
        self.store, self.ref, self.dir = store, ref, import_dir
        self.platform = want_platform(platform)
        self.top_digest, self.manifest_digest = top_digest, manifest_digest
        self.unpack, self.warnings = None, []
        self.client = _NothingDownloaded()

    def _bytes(self, digest, limit):
        if self.store.has_blob(digest):
            return self.store.read_blob(digest, limit)
        path = os.path.join(self.dir, digest_hex(digest, "import_from blob"))
        try:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise OCIError("import_from %s: blob %s: %s" % (self.dir, digest, exc.strerror or exc))
        if len(data) > limit:
            raise OCIError("import_from %s: blob %s: more than %d bytes" % (self.dir, digest, limit))
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise OCIError("import_from %s: blob %s: content does not match its digest" % (self.dir, digest))
        return data

    def resolve(self):
        body = self._bytes(self.manifest_digest, media.MAX_MANIFEST)
        top = self._bytes(self.top_digest, media.MAX_MANIFEST) if self.top_digest != self.manifest_digest \
            else body
        value = _json(body, "manifest %s" % self.manifest_digest)
        if value.get("mediaType", MANIFEST_MEDIA[0]) not in MANIFEST_MEDIA:
            raise OCIError("manifest %s: not an image manifest" % self.manifest_digest)
        return self.top_digest, top, self.manifest_digest, body, value

    def fetch(self, desc, what):
        if self.store.has_blob(desc["digest"], desc["size"]):
            return False
        path = os.path.join(self.dir, digest_hex(desc["digest"], what + ".digest"))
        try:
            source = open(path, "rb")
        except OSError as exc:
            raise OCIError("import_from %s: %s (%s): %s" % (self.dir, desc["digest"], what, exc.strerror or exc))
        with source, self.store.new_blob(desc["digest"]) as handle:
            copied = 0
            for chunk in iter(lambda: source.read(1 << 20), b""):
                copied += len(chunk)
                if copied > desc["size"]:
                    raise OCIError("import_from %s: %s (%s): larger than its descriptor says"
                                   % (self.dir, desc["digest"], what))
                handle.write(chunk)
            self.store.admit(handle, desc["digest"])  # checks the digest
        return True


def import_image(image_root, name, import_dir, check_mode=False, state_root=None):
    """oci_image import_from: register NAME from blobs in IMPORT_DIR (with its image.json: digest, manifest)."""
    ref = references.parse(name)
    store = Store(image_root)
    try:
        with open(os.path.join(import_dir, "image.json")) as handle:
            wanted = json.load(handle)
        top, manifest = wanted["digest"], wanted["manifest"]
        digest_hex(top, "import_from image.json digest")
        digest_hex(manifest, "import_from image.json manifest")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OCIError("import_from %s: image.json with digest and manifest is required: %s" % (import_dir, exc))
    existing = store.lookup(ref.name)
    before = dict(digest=existing.get("digest") if existing else None)
    if existing and existing.get("manifest") == manifest:
        return dict(changed=False, actions=[], image=summary(ref.name, existing, store, state_root), downloaded_bytes=0,
                    before=before)
    if check_mode:
        return dict(changed=True, actions=["import %s (%s)" % (ref.name, top)], image=dict(name=ref.name, digest=top),
                    downloaded_bytes=0, before=before)
    with store.locked():
        record, copied = Importer(store, ref, import_dir, top, manifest, wanted.get("platform")).pull()
        store.set_name(ref.name, record)
    return dict(changed=True, actions=["import %s" % d for d in copied] + ["tag %s as %s" % (top, ref.name)],
                image=summary(ref.name, record, store, state_root), downloaded_bytes=0, before=before)


def ensure_present(image_root, name, pull="missing", platform=None, username=None, password=None, auth_file=None,
                   validate_certs=True, ca_path=None, timeout=media.DEFAULT_TIMEOUT, check_mode=False, unpack=None,
                   state_root=None):
    """oci_image state=present: dict(changed, actions, image, downloaded_bytes, warnings); with STATE_ROOT,
    the image names the containers there that use it.

    UNPACK (store, layer entry, label) -> warnings, when given, unpacks each layer as the pull
    fetches it (image_rootfs.pull_unpacker)."""
    ref = references.parse(name)
    store = Store(image_root)
    want = want_platform(platform)
    existing = store.lookup(ref.name)
    before = dict(digest=existing.get("digest") if existing else None)
    if existing and want_platform(existing.get("platform")) and not platform_matches(
            want, want_platform(existing["platform"])):
        existing = None  # present for another platform: pull this one
    if pull == "never" or (pull == "missing" and existing):
        if not existing:
            raise OCIError("name: %s is not in the store %s, and pull=never" % (ref.name, store.root))
        return dict(changed=False, actions=[], image=summary(ref.name, existing, store, state_root), downloaded_bytes=0,
                    before=before)
    user, secret = credentials(ref, username, password, auth_file)
    puller = Puller(store, ref, platform=want, username=user, password=secret, validate_certs=validate_certs,
                    ca_path=ca_path, timeout=timeout, unpack=unpack)
    if check_mode:
        remote = puller.remote_digest()
        changed = not existing or existing.get("digest") != remote
        image = summary(ref.name, existing, store, state_root) if existing and not changed else dict(name=ref.name, digest=remote)
        return dict(changed=changed, actions=["pull %s (%s)" % (ref.name, remote)] if changed else [],
                    image=image, downloaded_bytes=puller.client.downloaded, before=before)
    with store.locked():
        existing = store.lookup(ref.name) if pull == "always" else None
        if pull == "missing":
            again = store.lookup(ref.name)
            if again and platform_matches(want, want_platform(again.get("platform"))):
                # Another play pulled it while this one waited for the lock.
                return dict(changed=False, actions=[], image=summary(ref.name, again, store, state_root), downloaded_bytes=0,
                            before=before)
        record, downloaded = puller.pull()
        actions = ["download %s" % d for d in downloaded]
        if not existing or existing.get("manifest") != record["manifest"]:
            actions.append("tag %s as %s" % (record["digest"], ref.name))
            store.set_name(ref.name, record)
        elif existing != record and downloaded:
            store.set_name(ref.name, record)
        else:
            record = existing
    return dict(changed=bool(actions), actions=actions, image=summary(ref.name, record, store, state_root),
                downloaded_bytes=puller.client.downloaded, before=before, warnings=puller.warnings)


def ensure_absent(image_root, name, force=False, check_mode=False, state_root=None):
    """oci_image state=absent: remove NAME, then collect what nothing references any more. A refusal names
    the containers of STATE_ROOT that run from the bundles using NAME: those are what must go first."""
    ref = references.parse(name)
    store = Store(image_root)
    if not os.path.isdir(store.root):
        return dict(changed=False, actions=[], image=None)
    existing = store.lookup(ref.name)
    if existing is None:
        return dict(changed=False, actions=[], image=None)
    users = store.users_of(ref.name, existing)
    if users and not force:
        ids = containers_using(users, state_root)
        running = " (container(s) %s in state_root %s)" % (", ".join(ids), state_root) if ids else ""
        raise OCIError("name: %s is used by bundle(s) %s%s; remove them first, or force=true to remove the name "
                       "and keep the layers they use" % (ref.name, ", ".join(users), running))
    actions = ["remove %s" % ref.name]
    if check_mode:
        return dict(changed=True, actions=actions, image=summary(ref.name, existing, store, state_root))
    with store.locked():
        store.remove_name(ref.name)
        actions.extend("collect %s" % item for item in store.collect())
    return dict(changed=True, actions=actions, image=summary(ref.name, existing))


def describe(image_root, name=None, state_root=None):
    """oci_image_info: every name in the store (or those of NAME, one name or a list), with the bundles and
    containers using them."""
    store = Store(image_root)
    names = store.names() if os.path.isdir(store.root) else {}
    if name is not None:
        asked = [name] if isinstance(name, str) else list(name)
        wanted = set(references.parse(one, field="name[%d]" % index).name if len(asked) > 1
                     else references.parse(one).name for index, one in enumerate(asked))
        names = dict((k, v) for k, v in names.items() if k in wanted)
    by_bundle = containers_by_bundle(state_root)
    return [summary(key, names[key], store, state_root, by_bundle) for key in sorted(names)]
