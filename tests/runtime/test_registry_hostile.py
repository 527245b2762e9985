"""Hostile registry answers: a fake registry (TLS, on 127.0.0.1) that lies, stalls, loops and redirects.

Whatever it serves, nothing unverified enters the store, no name changes,
and errors name the blob or manifest at fault. The fake speaks just enough
of the distribution API; each test scripts its misbehaviour.
"""
import json
import os

import pytest

import registry_support as rs
from registry_support import FakeRegistry, make_image
from ansible_collections.daemonless.oci.plugins.module_utils._image import client, pull
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


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


def test_a_redirect_from_https_to_http_is_refused(fake, pki, image_root):
    server = fake()
    manifest, blobs = make_image({"a": b"a"})
    server.add("1", manifest, blobs)
    layer = json.loads(manifest)["layers"][0]["digest"]
    server.script["/v2/repo/blobs/" + layer] = [("redirect", "http://%s/v2/repo/blobs/%s" % (server.host, layer))]
    with pytest.raises(OCIError) as info:
        get(pki, image_root, server.host + "/repo:1")
    assert "redirect from https to plain http refused" in str(info.value)
    assert not Store(image_root).has_blob(layer) and Store(image_root).names() == {}
