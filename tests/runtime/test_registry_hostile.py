"""Hostile registry answers: a fake registry (TLS, on 127.0.0.1) that lies, stalls, loops and redirects.

Whatever it serves, nothing unverified enters the store, no name changes,
and errors name the blob or manifest at fault. The fake speaks just enough
of the distribution API; each test scripts its misbehaviour.
"""
import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import pytest

import registry_support as rs
from ansible_collections.daemonless.oci.plugins.module_utils._image import client, pull
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(files):
    """(manifest bytes, {digest: blob}) of a one-layer image holding FILES {path: bytes}."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(raw.getvalue())]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest_of(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": digest_of(layer), "size": len(layer)}]}).encode()
    return manifest, {digest_of(config): config, digest_of(layer): layer}


class FakeRegistry(object):
    """Serves /v2/, one repository's manifests and blobs; `script` bends the answers per path."""

    def __init__(self, pki, basic_auth=False):
        self.manifests, self.blobs = {}, {}
        self.script = {}            # path -> list of actions consumed one per request
        self.seen = []              # (path, headers dict)
        self.basic_auth = basic_auth
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.answer(self)

            do_HEAD = do_GET

        self.port = rs.free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.socket = pki.server_context().wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def add(self, tag, manifest, blobs):
        self.manifests[tag] = manifest
        self.manifests[digest_of(manifest)] = manifest
        self.blobs.update(blobs)

    def send(self, handler, status, body=b"", headers=None, length=None):
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def answer(self, handler):
        path = handler.path
        self.seen.append((path, dict(handler.headers.items())))
        if self.basic_auth and path.startswith("/v2/") and handler.headers.get("Authorization") != \
                "Basic " + base64.b64encode(("%s:%s" % (rs.USER, rs.PASSWORD)).encode()).decode():
            return self.send(handler, 401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        actions = self.script.get(path)
        action = actions.pop(0) if actions else None
        if isinstance(action, int):
            return self.send(handler, action, headers={"Retry-After": "0"})
        if isinstance(action, tuple) and action[0] == "redirect":
            return self.send(handler, 307, headers={"Location": action[1]})
        if path == "/v2/":
            return self.send(handler, 200)
        kind, _sep, ref = path[len("/v2/repo/"):].partition("/")
        if kind == "manifests" and ref in self.manifests:
            body = self.manifests[ref]
            if action == "huge":
                return self.send(handler, 200, b"{" * 1024, {"Content-Type": MANIFEST}, length=100 << 20)
            return self.send(handler, 200, body, {"Content-Type": MANIFEST, "Docker-Content-Digest": digest_of(body)})
        if kind == "blobs" and ref in self.blobs:
            body = self.blobs[ref]
            if action == "flip":
                body = body[:-20] + bytes([body[-20] ^ 1]) + body[-19:]
            start = 0
            wanted = handler.headers.get("Range")
            if wanted:
                start = int(wanted.split("=")[1].rstrip("-"))
                handler.send_response(206)
                handler.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))
                handler.send_header("Content-Length", str(len(body) - start))
                handler.end_headers()
                handler.wfile.write(body[start:])
                return
            if action == "break":
                # The whole length announced, half sent, the connection closed: a download broken off.
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body[:len(body) // 2])
                handler.wfile.flush()
                handler.close_connection = True
                handler.connection.shutdown(2)
                return
            return self.send(handler, 200, body)
        return self.send(handler, 404, json.dumps({"errors": [{"code": "NOT_FOUND", "message": "nope"}]}).encode())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return rs.Pki(str(tmp_path_factory.mktemp("hostile-pki")))


@pytest.fixture
def fake(pki):
    servers = []

    def start(**kwargs):
        server = FakeRegistry(pki, **kwargs)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def image_root(tmp_path):
    return str(tmp_path / "images")


def nothing_stored(image_root):
    store = Store(image_root)
    for sub in ("blobs/sha256", "layers/sha256", "tmp"):
        path = os.path.join(image_root, sub)
        assert not os.path.isdir(path) or os.listdir(path) == [], sub
    assert store.names() == {}


def get(pki, image_root, name, **kwargs):
    return pull.ensure_present(image_root, name, ca_path=pki.ca, **kwargs)


def test_a_corrupted_blob_is_refused_and_nothing_enters_the_store(fake, pki, image_root):
    server = fake()
    manifest, blobs = make_image({"etc/hello": b"hi\n" * 1000})
    server.add("1", manifest, blobs)
    layer = json.loads(manifest)["layers"][0]["digest"]
    server.script["/v2/repo/blobs/" + layer] = ["flip"]
    with pytest.raises(OCIError) as info:
        get(pki, image_root, server.host + "/repo:1")
    assert layer in str(info.value) and "not its digest" in str(info.value)
    # The config was fine and verified; the layer was not: no name, and only the config blob.
    store = Store(image_root)
    assert store.names() == {} and not store.has_blob(layer)
    assert os.listdir(os.path.join(image_root, "tmp")) == []


def test_an_interrupted_download_resumes_with_range(fake, pki, image_root):
    server = fake()
    manifest, blobs = make_image({"etc/big": os.urandom(300000)})
    server.add("1", manifest, blobs)
    layer = json.loads(manifest)["layers"][0]
    server.script["/v2/repo/blobs/" + layer["digest"]] = ["break"]
    result = get(pki, image_root, server.host + "/repo:1")
    assert result["changed"] and Store(image_root).has_blob(layer["digest"], layer["size"])
    ranges = [h.get("Range") for p, h in server.seen if p.endswith(layer["digest"])]
    assert ranges[0] is None and ranges[1] == "bytes=%d-" % (layer["size"] // 2)


def test_429_and_5xx_are_retried(fake, pki, image_root):
    server = fake()
    manifest, blobs = make_image({"a": b"a"})
    server.add("1", manifest, blobs)
    server.script["/v2/repo/manifests/1"] = [429, 503]
    assert get(pki, image_root, server.host + "/repo:1")["changed"]
    assert [p for p, h in server.seen].count("/v2/repo/manifests/1") == 3
    server.script["/v2/repo/manifests/1"] = [500] * (client.RETRIES + 1)
    with pytest.raises(OCIError) as info:
        get(pki, image_root, server.host + "/repo:1", pull="always")
    assert "HTTP 500" in str(info.value)


def test_a_huge_manifest_is_refused(fake, pki, image_root):
    server = fake()
    manifest, blobs = make_image({"a": b"a"})
    server.add("1", manifest, blobs)
    server.script["/v2/repo/manifests/1"] = ["huge"]
    with pytest.raises(OCIError) as info:
        get(pki, image_root, server.host + "/repo:1")
    assert "104857600 bytes, more than the %d accepted" % client.MAX_MANIFEST in str(info.value)
    nothing_stored(image_root)


def test_a_redirect_loop_ends(fake, pki, image_root):
    server = fake()
    manifest, blobs = make_image({"a": b"a"})
    server.add("1", manifest, blobs)
    server.script["/v2/repo/manifests/1"] = [("redirect", "/v2/repo/manifests/1")] * 50
    with pytest.raises(OCIError) as info:
        get(pki, image_root, server.host + "/repo:1")
    assert "more than %d redirects" % client.MAX_REDIRECTS in str(info.value)
    nothing_stored(image_root)


def test_a_redirect_to_another_host_carries_no_authorization(fake, pki, image_root):
    registry, storage = fake(basic_auth=True), fake()
    manifest, blobs = make_image({"a": b"a" * 5000})
    registry.add("1", manifest, blobs)
    storage.add("1", manifest, blobs)
    layer = json.loads(manifest)["layers"][0]["digest"]
    registry.script["/v2/repo/blobs/" + layer] = [("redirect", "https://%s/v2/repo/blobs/%s" % (storage.host, layer))]
    result = get(pki, image_root, registry.host + "/repo:1", username=rs.USER, password=rs.PASSWORD)
    assert result["changed"] and Store(image_root).has_blob(layer)
    sent_to_registry = [h for p, h in registry.seen if p.endswith(layer)]
    assert sent_to_registry and sent_to_registry[-1].get("Authorization", "").startswith("Basic ")
    sent_to_storage = [h for p, h in storage.seen if p.endswith(layer)]
    assert len(sent_to_storage) == 1 and "Authorization" not in sent_to_storage[0]


@pytest.mark.parametrize("change, needle", [
    (lambda m: m["layers"][0].update(digest="sha256:../../../etc/passwd"), "is not a sha256 digest"),
    (lambda m: m["layers"][0].update(size=-1), "is not a byte count"),
    (lambda m: m["layers"][0].update(mediaType="application/x-evil"), "media type 'application/x-evil'"),
    (lambda m: m["config"].update(size=1 << 40), "more than the"),
    (lambda m: m.update(layers="x"), "layers must be a list"),
])
def test_hostile_manifests_are_refused(fake, pki, image_root, change, needle):
    server = fake()
    manifest, blobs = make_image({"a": b"a"})
    value = json.loads(manifest)
    change(value)
    server.add("1", json.dumps(value).encode(), blobs)
    with pytest.raises(OCIError) as info:
        get(pki, image_root, server.host + "/repo:1")
    assert needle in str(info.value)
    nothing_stored(image_root)


def test_a_manifest_that_does_not_match_its_pinned_digest(fake, pki, image_root):
    server = fake()
    manifest, blobs = make_image({"a": b"a"})
    server.add("1", manifest, blobs)
    liar = "sha256:" + "1" * 64
    server.manifests[liar] = manifest
    with pytest.raises(OCIError) as info:
        get(pki, image_root, server.host + "/repo@" + liar)
    assert "not the digest asked for" in str(info.value)
    nothing_stored(image_root)
