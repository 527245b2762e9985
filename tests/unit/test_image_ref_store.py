"""The image store's bookkeeping (_image/store.py) without a registry: names, users, collection, admission."""
import hashlib
import os

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def put(store, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.put_bytes(digest, data)
    return digest


def record(store, layer_data, diff_hex):
    layer = put(store, layer_data)
    os.makedirs(store.layer_path("sha256:" + diff_hex))
    return dict(digest=put(store, b"manifest" + layer_data), manifest=None, config=put(store, b"config" + layer_data),
                layers=[dict(digest=layer, size=len(layer_data), diff_id="sha256:" + diff_hex)])


def test_collection_keeps_what_names_and_live_users_reference(tmp_path):
    store = Store(str(tmp_path / "images"))
    with store.locked():
        kept = record(store, b"kept", "a" * 64)
        used = record(store, b"used", "b" * 64)
        dropped = record(store, b"dropped", "c" * 64)
        stale = record(store, b"stale", "d" * 64)
        store.set_name("r.io/kept:1", kept)
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        store.add_user(str(bundle), "r.io/used:1", used)
        # A user whose bundle directory is gone no longer holds anything.
        store.add_user(str(tmp_path / "gone"), "r.io/stale:1", stale)
        removed = store.collect()
    for digest in [kept["digest"], kept["config"], used["digest"], used["layers"][0]["digest"]]:
        assert store.has_blob(digest)
    assert store.has_layer("sha256:" + "a" * 64) and store.has_layer("sha256:" + "b" * 64)
    for item in (dropped, stale):
        assert not store.has_blob(item["digest"]) and not store.has_layer(item["layers"][0]["diff_id"])
    assert "layers/" + dropped["layers"][0]["diff_id"] in removed
    assert store.users_of("r.io/used:1", None) == [str(bundle)]
    assert store.remove_user(str(bundle)) and store.users_of("r.io/used:1", None) == []


def test_admission_checks_the_digest_and_leaves_no_temporary_file(tmp_path):
    store = Store(str(tmp_path / "images"))
    wrong = "sha256:" + "0" * 64
    with store.locked():
        with pytest.raises(OCIError) as info:
            with store.new_blob(wrong) as handle:
                handle.write(b"not what the digest says")
                store.admit(handle, wrong)
    assert "not stored" in str(info.value)
    assert not store.has_blob(wrong) and os.listdir(os.path.join(store.root, "tmp")) == []


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "md5:" + "a" * 32, "sha256:" + "A" * 64, None])
def test_digests_that_are_not_file_names_are_refused(tmp_path, digest):
    with pytest.raises(OCIError):
        Store(str(tmp_path)).blob_path(digest)


def test_image_root_must_be_absolute():
    with pytest.raises(OCIError) as info:
        Store("relative/images")
    assert "image_root" in str(info.value)
