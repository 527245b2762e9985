"""What a pull pays per request and per layer: one TLS context per registry, no GSSAPI imports, downloads
that do not wait for unpacks. Against the fake registry (real TLS on 127.0.0.1) and real layers."""
import json
import os
import subprocess
import sys
import time

import pytest

import registry_support as rs
from registry_support import FakeRegistry, make_image
from test_registry_hostile import nothing_stored
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import image_rootfs
from ansible_collections.daemonless.oci.plugins.module_utils._image import client, pull
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return rs.Pki(str(tmp_path_factory.mktemp("client-pki")))


@pytest.fixture
def server(pki):
    fake = FakeRegistry(pki, basic_auth=True)
    yield fake
    fake.stop()


@pytest.fixture
def image_root(tmp_path):
    return str(tmp_path / "images")


def three_layers():
    return make_image(None, layers=[[rs._file_info("layer%d/file" % n, os.urandom(20000 * (n + 1)))]
                                    for n in range(3)])


def test_a_pull_makes_one_tls_context_for_all_its_requests(server, pki, image_root, monkeypatch):
    manifest, blobs = three_layers()
    server.add("1", manifest, blobs)
    made = []
    real = client.make_context

    def counting(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(client, "make_context", counting)
    result = pull.ensure_present(image_root, server.host + "/repo:1", ca_path=pki.ca, username=rs.USER,
                                 password=rs.PASSWORD)
    assert result["changed"] and len(result["image"]["layers"]) == 3
    # /v2/ (the Basic challenge), the manifest, the config and three layers: all over one context.
    requests = [path for path, _headers in server.seen]
    assert len(requests) >= 6 and sum(1 for p in requests if "/blobs/" in p) == 4, requests
    assert made == [dict(cafile=pki.ca, validate_certs=True)]


def test_a_ca_path_that_cannot_be_read_is_named(server, pki, image_root, tmp_path):
    manifest, blobs = three_layers()
    server.add("1", manifest, blobs)
    missing = str(tmp_path / "no-such-ca.crt")
    with pytest.raises(OCIError) as info:
        pull.ensure_present(image_root, server.host + "/repo:1", ca_path=missing, username=rs.USER,
                            password=rs.PASSWORD)
    assert "ca_path %s" % missing in str(info.value) and rs.PASSWORD not in str(info.value)
    assert server.seen == []
    nothing_stored(image_root)
    not_pem = tmp_path / "garbage.crt"
    not_pem.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(OCIError) as info:
        pull.ensure_present(image_root, server.host + "/repo:1", ca_path=str(not_pem))
    assert "ca_path %s" % not_pem in str(info.value)
    nothing_stored(image_root)


def test_the_client_does_not_import_cryptography_x509_and_leaves_it_importable():
    code = ("import sys; from ansible_collections.daemonless.oci.plugins.module_utils._image import client; "
            "print('cryptography.x509' in sys.modules, client.Request.__module__); "
            "from cryptography import x509; print(x509.load_pem_x509_certificate.__name__)")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, check=True, env=dict(os.environ)).stdout.split()
    assert out == ["False", "ansible.module_utils.urls", "load_pem_x509_certificate"]


def test_an_unpack_does_not_hold_a_download_place(server, pki, image_root, monkeypatch):
    """One download at a time: the first layer's unpack waits until the second layer's blob is in the
    store. Were the unpack holding the only download place, the second would never come."""
    manifest, blobs = three_layers()
    server.add("1", manifest, blobs)
    layers = json.loads(manifest)["layers"]
    store = Store(image_root)
    monkeypatch.setattr(pull, "LAYER_THREADS", 1)
    waited = []

    def unpack(store_, layer, label):
        if layer["digest"] == layers[0]["digest"]:
            for _try in range(600):  # a hung test ends after a minute, failing below
                if all(store.has_blob(other["digest"]) for other in layers[1:]):
                    waited.append(layer["digest"])
                    break
                time.sleep(0.1)
            else:
                raise OCIError("the other layers never downloaded while %s was unpacking" % layer["digest"])
        return image_rootfs.unpack_layer(store_, layer, label)
    result = pull.ensure_present(image_root, server.host + "/repo:1", ca_path=pki.ca, username=rs.USER,
                                 password=rs.PASSWORD, unpack=unpack)
    assert result["changed"] and waited == [layers[0]["digest"]]
    for position, layer in enumerate(result["image"]["layers"]):
        diff_id = store.lookup(result["image"]["name"])["layers"][position]["diff_id"]
        with open(os.path.join(store.layer_path(diff_id), "layer%d" % position, "file"), "rb") as handle:
            assert len(handle.read()) == 20000 * (position + 1)
    assert os.listdir(os.path.join(image_root, "tmp")) == []


def test_the_unpacker_is_imported_only_to_unpack(server, pki, image_root, tmp_path):
    """oci_image finding its image present and a bundle from layers the pull unpacked load no tar reader
    and no writer (about 25 ms of imports); a pull that unpacks does."""
    manifest, blobs = three_layers()
    server.add("1", manifest, blobs)
    name = server.host + "/repo:1"
    pull.ensure_present(image_root, name, ca_path=pki.ca, username=rs.USER, password=rs.PASSWORD,
                        unpack=image_rootfs.pull_unpacker())
    unpacker = ["tarfile", "ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer",
                "ansible_collections.daemonless.oci.plugins.module_utils._bundle.tarball"]
    code = ("import sys, json; from ansible_collections.daemonless.oci.plugins.module_utils._image import pull; "
            "from ansible_collections.daemonless.oci.plugins.module_utils._bundle import image_rootfs, bundle; "
            "r = pull.ensure_present(sys.argv[1], sys.argv[2], unpack=image_rootfs.pull_unpacker()); "
            "assert not r['changed'], r; "
            "bundle.ensure(sys.argv[3], {'args': ['/bin/true']}, image=sys.argv[2], image_root=sys.argv[1]); "
            "print(json.dumps([m for m in %r if m in sys.modules]))" % (unpacker,))
    out = subprocess.run([sys.executable, "-c", code, image_root, name, str(tmp_path / "bundle")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    assert os.path.isdir(str(tmp_path / "bundle" / "rootfs"))  # no container: tmp_path holds it all


def _with_config(manifest, blobs, change):
    """MANIFEST and BLOBS with the config changed by CHANGE (a function of the config dict)."""
    value = json.loads(manifest)
    config = json.loads(blobs.pop(value["config"]["digest"]))
    change(config)
    data = json.dumps(config).encode() if not isinstance(config, bytes) else config
    value["config"].update(digest=rs.digest_of(data), size=len(data))
    blobs[rs.digest_of(data)] = data
    return json.dumps(value).encode(), blobs


def test_the_layers_download_while_the_config_is_fetched(server, pki, image_root):
    manifest, blobs = three_layers()
    server.add("1", manifest, blobs)
    value = json.loads(manifest)
    config_path = "/v2/repo/blobs/" + value["config"]["digest"]
    server.script[config_path] = [("delay", 1.0)]
    result = pull.ensure_present(image_root, server.host + "/repo:1", ca_path=pki.ca, username=rs.USER,
                                 password=rs.PASSWORD, unpack=image_rootfs.pull_unpacker())
    assert result["changed"]
    layer_paths = ["/v2/repo/blobs/" + layer["digest"] for layer in value["layers"]]
    # Every layer was sent whole before the (slow) config was: they did not wait for it.
    assert server.served.index(config_path) > max(server.served.index(p) for p in layer_paths), server.served
    store = Store(image_root)
    record = store.lookup(result["image"]["name"])
    assert all(layer["diff_id"] and store.has_layer(layer["diff_id"]) for layer in record["layers"])


@pytest.mark.parametrize("change, needle", [
    (lambda c: c["rootfs"].update(diff_ids=c["rootfs"]["diff_ids"][:2]), "must list one digest per layer"),
    (lambda c: c["rootfs"]["diff_ids"].__setitem__(1, "sha256:../../etc"), "rootfs.diff_ids[1]"),
    (lambda c: c.update(architecture="arm64"), "the image is for linux/arm64"),
    (lambda c: c.clear(), "must list one digest per layer"),
], ids=["diff-ids-short", "diff-id-path", "other-platform", "empty"])
def test_a_refused_config_leaves_none_of_the_layers_it_raced(server, pki, image_root, change, needle):
    manifest, blobs = _with_config(*three_layers(), change)
    server.add("1", manifest, blobs)
    config_path = "/v2/repo/blobs/" + json.loads(manifest)["config"]["digest"]
    server.script[config_path] = [("delay", 0.5)]  # the layers land first
    with pytest.raises(OCIError) as info:
        pull.ensure_present(image_root, server.host + "/repo:1", ca_path=pki.ca, username=rs.USER,
                            password=rs.PASSWORD, unpack=image_rootfs.pull_unpacker(), platform="linux/amd64")
    assert needle in str(info.value)
    assert sum(1 for p in server.served if "/blobs/" in p) == 4  # they did download, then went
    nothing_stored(image_root)


def test_a_config_that_is_not_json_is_named_and_nothing_stays(server, pki, image_root):
    manifest, blobs = three_layers()
    value = json.loads(manifest)
    del blobs[value["config"]["digest"]]
    garbage = b"\x00not json\xff" * 10
    value["config"].update(digest=rs.digest_of(garbage), size=len(garbage))
    blobs[rs.digest_of(garbage)] = garbage
    server.add("1", json.dumps(value).encode(), blobs)
    with pytest.raises(OCIError) as info:
        pull.ensure_present(image_root, server.host + "/repo:1", ca_path=pki.ca, username=rs.USER,
                            password=rs.PASSWORD, unpack=image_rootfs.pull_unpacker())
    assert "config %s: not JSON" % rs.digest_of(garbage) in str(info.value)
    nothing_stored(image_root)
