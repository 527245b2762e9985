"""oci_image's backend (_image/pull.py) against real registries: Debian's docker-registry on 127.0.0.1.

Two instances share a test CA: one with htpasswd Basic auth, one in
`auth: token` mode whose tokens come from the tests' own issuer
(registry_support.TokenIssuer), so the Bearer flow is the real one. The
images are umoci layouts pushed with skopeo (registry_support.build_layout).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

import busybox_bundle  # tools/, on sys.path through tests/conftest.py
import registry_support as rs
from helpers import COLLECTIONS, ansible_env
from ansible_collections.daemonless.oci.plugins.module_utils._image import pull
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

pytestmark = [
    pytest.mark.skipif(rs.REGISTRY is None, reason="docker-registry is not installed (Debian package docker-registry)"),
    pytest.mark.skipif(rs.SKOPEO is None or rs.UMOCI is None, reason="skopeo and umoci build the test images"),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Both registries with the test images pushed: test/{busybox,app,multi,zstd}:1 in each, public/busybox:1."""
    base = str(tmp_path_factory.mktemp("registries"))
    pki = rs.Pki(os.path.join(base, "pki"))
    started = []
    try:
        basic = rs.Registry(os.path.join(base, "basic"), pki)
        started.append(basic)
        issuer = rs.TokenIssuer(pki)
        started.append(issuer)
        token = rs.Registry(os.path.join(base, "token"), pki, issuer)
        started.append(token)
        busybox_bundle.build_rootfs(os.path.join(base, "src"))
        layout = rs.build_layout(base, os.path.join(base, "src"))
        zstd_layout = os.path.join(base, "zstd-layout")
        rs.run(rs.SKOPEO, "copy", "--quiet", "--dest-compress-format", "zstd", "oci:%s:base" % layout,
               "oci:%s:base" % zstd_layout)
        for registry in (basic, token):
            rs.push(pki, layout, "base", registry.host + "/test/busybox:1")
            rs.push(pki, layout, "app", registry.host + "/test/app:1")
            rs.push(pki, layout, "multi", registry.host + "/test/multi:1", extra=["--all"])
            rs.push(pki, zstd_layout, "base", registry.host + "/test/zstd:1",
                    extra=["--dest-compress-format", "zstd"])
        rs.push(pki, layout, "base", token.host + "/public/busybox:1")
        yield dict(pki=pki, basic=basic, token=token, issuer=issuer, layout=layout, base=base)
    finally:
        for item in reversed(started):
            item.stop()


@pytest.fixture
def image_root(tmp_path):
    return str(tmp_path / "images")


def present(env, image_root, name, registry="basic", creds=True, **kwargs):
    kwargs.setdefault("ca_path", env["pki"].ca)
    if creds:
        kwargs.setdefault("username", rs.USER)
        kwargs.setdefault("password", rs.PASSWORD)
    return pull.ensure_present(image_root, "%s/%s" % (env[registry].host, name), **kwargs)


def store_files(image_root):
    found = []
    for sub in ("blobs/sha256", "layers/sha256", "tmp"):
        path = os.path.join(image_root, sub)
        found.extend(sub + "/" + name for name in (sorted(os.listdir(path)) if os.path.isdir(path) else []))
    return found


def test_pull_stores_verified_blobs_and_a_repull_downloads_nothing(env, image_root):
    first = present(env, image_root, "test/busybox:1")
    image = first["image"]
    assert first["changed"] and first["downloaded_bytes"] > 1000000
    assert image["platform"] == "linux/amd64" and image["config"]["cmd"] == ["sh"]
    assert image["config"]["env"][-1] == "IMAGE=base" and image["config"]["labels"] == {"org.example.role": "test"}
    assert image["config"]["exposed_ports"] == ["8080/tcp"]
    store = Store(image_root)
    for digest in [image["manifest_digest"], image["config_digest"]] + image["layers"]:
        assert store.has_blob(digest)
        assert rs.sha256_file(store.blob_path(digest)) == digest
    assert Store(image_root).lookup(image["name"])["manifest"] == image["manifest_digest"]
    again = present(env, image_root, "test/busybox:1")
    assert again["changed"] is False and again["downloaded_bytes"] == 0 and again["image"] == image
    always = present(env, image_root, "test/busybox:1", pull="always")
    # pull=always asks for the manifest again, and downloads no blob.
    assert always["changed"] is False and always["actions"] == []
    assert always["downloaded_bytes"] < 2000


def test_a_layer_shared_by_two_images_is_downloaded_once(env, image_root):
    base = present(env, image_root, "test/busybox:1")["image"]
    app = present(env, image_root, "test/app:1")
    assert app["changed"] and app["image"]["layers"][0] == base["layers"][0]
    downloaded = [a.split()[1] for a in app["actions"] if a.startswith("download ")]
    assert base["layers"][0] not in downloaded and app["image"]["layers"][1] in downloaded
    assert app["downloaded_bytes"] < 10000
    assert len([f for f in store_files(image_root) if f.startswith("blobs/")]) == 6  # 2 manifests, 2 configs, 2 layers


def test_a_pinned_digest_and_a_wrong_one(env, image_root):
    digest = present(env, image_root, "test/busybox:1")["image"]["digest"]
    pinned = present(env, image_root, "test/busybox@" + digest)
    assert pinned["changed"] and pinned["image"]["digest"] == digest
    assert pinned["downloaded_bytes"] < 2000  # the blobs were there already
    other = "sha256:" + "0" * 64
    with pytest.raises(OCIError) as info:
        present(env, image_root, "test/busybox@" + other)
    assert "HTTP 404" in str(info.value) and other in str(info.value)


def test_the_platform_picks_the_image_of_an_index(env, image_root):
    default = present(env, image_root, "test/multi:1")["image"]
    assert default["platform"] == "linux/amd64" and "IMAGE=base" in default["config"]["env"]
    shutil.rmtree(image_root)
    arm = present(env, image_root, "test/multi:1", platform="linux/arm64/v8")["image"]
    assert arm["platform"] == "linux/arm64" and "IMAGE=arm" in arm["config"]["env"]
    assert arm["digest"] == default["digest"] and arm["manifest_digest"] != default["manifest_digest"]
    with pytest.raises(OCIError) as info:
        present(env, image_root, "test/multi:1", platform="linux/s390x", pull="always")
    assert "no image for platform linux/s390x" in str(info.value)
    assert "linux/amd64" in str(info.value) and "linux/arm64/v8" in str(info.value)


def test_a_zstd_layer(env, image_root):
    image = present(env, image_root, "test/zstd:1")["image"]
    record = Store(image_root).lookup(image["name"])
    assert [layer["media_type"] for layer in record["layers"]] == ["application/vnd.oci.image.layer.v1.tar+zstd"]
    with open(Store(image_root).blob_path(image["layers"][0]), "rb") as handle:
        assert handle.read(4) == b"\x28\xb5\x2f\xfd"


def test_pull_always_picks_up_a_repushed_tag(env, image_root):
    pki, host = env["pki"], env["basic"].host
    rs.push(pki, env["layout"], "base", host + "/test/moving:1")
    first = present(env, image_root, "test/moving:1")["image"]
    rs.push(pki, env["layout"], "v2", host + "/test/moving:1")
    assert present(env, image_root, "test/moving:1")["changed"] is False
    check = present(env, image_root, "test/moving:1", pull="always", check_mode=True)
    assert check["changed"] and check["image"]["digest"] != first["digest"]
    assert Store(image_root).lookup(first["name"])["digest"] == first["digest"]
    moved = present(env, image_root, "test/moving:1", pull="always")
    assert moved["changed"] and moved["image"]["digest"] == check["image"]["digest"]
    assert moved["before"] == {"digest": first["digest"]}


def test_check_mode_asks_for_the_digest_and_downloads_nothing(env, image_root):
    check = present(env, image_root, "test/busybox:1", check_mode=True)
    assert check["changed"] and check["image"]["digest"].startswith("sha256:")
    assert check["downloaded_bytes"] == 0 and store_files(image_root) == []
    real = present(env, image_root, "test/busybox:1")
    assert real["image"]["digest"] == check["image"]["digest"]
    assert present(env, image_root, "test/busybox:1", check_mode=True, pull="always")["changed"] is False


def test_bearer_tokens_from_the_realm_anonymous_and_with_credentials(env, image_root):
    issuer = env["issuer"]
    del issuer.requests[:]
    image = present(env, image_root, "test/busybox:1", registry="token")
    assert image["changed"]
    # One token for the repository's pull scope, reused for every request of the pull.
    assert issuer.requests == [(rs.USER, "repository:test/busybox:pull")]
    anonymous = present(env, image_root, "public/busybox:1", registry="token", creds=False)
    assert anonymous["changed"] and issuer.requests[-1] == (None, "repository:public/busybox:pull")
    with pytest.raises(OCIError) as info:
        present(env, image_root, "test/app:1", registry="token", creds=False)
    assert "HTTP 401" in str(info.value)
    assert Store(image_root).lookup(env["token"].host + "/test/app:1") is None


def test_an_expired_token_is_fetched_again(env, image_root):
    issuer = env["issuer"]
    del issuer.requests[:]
    issuer.expire_next = 1
    assert present(env, image_root, "test/app:1", registry="token")["changed"]
    assert issuer.requests == [(rs.USER, "repository:test/app:pull")] * 2


@pytest.mark.parametrize("registry", ["basic", "token"])
def test_a_wrong_password_fails_clearly_and_never_shows_a_password(env, image_root, registry):
    wrong = "WrongPassw0rd-xyz"
    with pytest.raises(OCIError) as info:
        present(env, image_root, "test/busybox:1", registry=registry, password=wrong)
    message = str(info.value)
    assert "refused the username and password" in message
    for secret in (wrong, rs.PASSWORD):
        assert secret not in message and secret not in repr(info.value.args)
    assert store_files(image_root) == [] or Store(image_root).names() == {}


def test_an_unreachable_registry_and_a_tls_failure(env, image_root):
    port = rs.free_port()
    with pytest.raises(OCIError) as info:
        pull.ensure_present(image_root, "127.0.0.1:%d/test/busybox:1" % port)
    assert "cannot reach the registry" in str(info.value) and "127.0.0.1:%d" % port in str(info.value)
    with pytest.raises(OCIError) as info:
        present(env, image_root, "test/busybox:1", ca_path=None)
    assert "TLS failure" in str(info.value) and "ca_path" in str(info.value)
    assert store_files(image_root) == []


def test_auth_file_credentials(env, image_root, tmp_path):
    import base64
    auth = tmp_path / "auth.json"
    token = base64.b64encode(("%s:%s" % (rs.USER, rs.PASSWORD)).encode()).decode()
    auth.write_text(json.dumps({"auths": {env["basic"].host: {"auth": token}}}))
    result = present(env, image_root, "test/busybox:1", creds=False, auth_file=str(auth))
    assert result["changed"]


def test_absent_collects_what_no_name_uses(env, image_root):
    base = present(env, image_root, "test/busybox:1")["image"]
    app = present(env, image_root, "test/app:1")["image"]
    gone = pull.ensure_absent(image_root, app["name"])
    assert gone["changed"] and "remove " + app["name"] in gone["actions"]
    remaining = store_files(image_root)
    assert "blobs/sha256/" + app["layers"][1].split(":")[1] not in remaining
    assert "blobs/sha256/" + base["layers"][0].split(":")[1] in remaining
    assert pull.ensure_absent(image_root, app["name"])["changed"] is False
    pull.ensure_absent(image_root, base["name"])
    assert store_files(image_root) == []
    assert Store(image_root).names() == {}


def test_two_pulls_of_one_name_at_once_both_succeed(env, image_root):
    code = ("import json, sys; from ansible_collections.daemonless.oci.plugins.module_utils._image import pull; "
            "r = pull.ensure_present(*sys.argv[1:3], username=sys.argv[3], password=sys.argv[4], ca_path=sys.argv[5]);"
            " print(json.dumps(r['image']['manifest_digest']))")
    envvars = dict(os.environ, PYTHONPATH=COLLECTIONS)
    argv = [sys.executable, "-c", code, image_root, env["basic"].host + "/test/app:1", rs.USER, rs.PASSWORD,
            env["pki"].ca]
    procs = [subprocess.Popen(argv, env=envvars, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _run in range(2)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    record = Store(image_root).lookup(env["basic"].host + "/test/app:1")
    for layer in record["layers"]:
        assert rs.sha256_file(Store(image_root).blob_path(layer["digest"])) == layer["digest"]
    assert os.listdir(os.path.join(image_root, "tmp")) == []


# -- containers from images: overlay root filesystems --------------------------------------------------------

def host_overlay_mounts(under):
    with open("/proc/self/mountinfo") as handle:
        return [line for line in handle if " overlay " in line and under in line]


def du(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files + _dirs:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def test_twenty_containers_share_the_image_layers_and_write_their_own_roots(env, image_root, tmp_path, ocirt):
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle
    from helpers import create_and_start, run_ok
    name = present(env, image_root, "test/app:1")["image"]["name"]
    store_before = du(image_root)
    bundles, ids = [], []
    for index in range(20):
        path = str(tmp_path / ("b%02d" % index))
        result = bundle.ensure(path, {"args": ["sh", "-c", "echo %d > /mine; echo changed > /app/hello; "
                                               "exec sleep 1000" % index]},
                               image=name, image_root=image_root, state_root=ocirt.root)
        assert result["changed"] and result["warnings"] == []
        bundles.append(path)
        ids.append("img-%02d" % index)
        create_and_start(ocirt, path, ids[-1])
    config = result["config"]
    assert "IMAGE=app" in config["process"]["env"] and config["root"] == {"path": "rootfs", "readonly": False}
    layers = os.listdir(os.path.join(image_root, "layers", "sha256"))
    assert len(layers) == 2  # the image's two layers, unpacked once for all twenty
    # The layers once in the store (unpacked), and per bundle only what its container wrote.
    assert du(image_root) - store_before > 1000000
    for path in bundles:
        assert du(path) < 200000, path
    for index, path in enumerate(bundles):
        def wrote(path=path):
            return os.path.exists(os.path.join(path, "overlay", "upper", "mine"))
        from helpers import poll
        poll(wrote, "container %d to write /mine" % index)
        with open(os.path.join(path, "overlay", "upper", "mine")) as handle:
            assert handle.read() == "%d\n" % index
    assert ocirt("exec", ids[3], "cat", "/mine").stdout == "3\n"
    assert ocirt("exec", ids[3], "cat", "/app/hello").stdout == "changed\n"
    # The shared lower layer is untouched, and the mounts live in the containers' namespaces only.
    app_layer = [d for d in layers if os.path.exists(os.path.join(image_root, "layers", "sha256", d, "app"))][0]
    with open(os.path.join(image_root, "layers", "sha256", app_layer, "app", "hello")) as handle:
        assert handle.read() == "hello from app\n"
    assert host_overlay_mounts(str(tmp_path)) == []
    # A fresh bundle of the same image sees the image, not the others' writes.
    fresh = str(tmp_path / "fresh")
    bundle.ensure(fresh, {"args": ["sh", "-c", "cat /app/hello; ls /mine 2>&1 || true"]}, image=name,
                  image_root=image_root, state_root=ocirt.root)
    out = run_ok(ocirt, fresh)
    assert out.startswith("hello from app\n") and "No such file" in out
    # Removal: the containers, the bundles, then the name; the collection leaves nothing behind.
    with pytest.raises(OCIError) as info:
        pull.ensure_absent(image_root, name)
    assert "is used by bundle(s)" in str(info.value)
    for cid in ids:
        ocirt("delete", "--force", cid)
    for path in bundles + [fresh]:
        bundle.remove(path, ocirt.root)
    pull.ensure_absent(image_root, name)
    assert store_files(image_root) == []


def test_a_name_removed_with_force_keeps_the_layers_a_bundle_uses(env, image_root, tmp_path, ocirt):
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle
    from helpers import run_ok
    name = present(env, image_root, "test/busybox:1")["image"]["name"]
    path = str(tmp_path / "b")
    bundle.ensure(path, {"args": ["cat", "/etc/passwd"]}, image=name, image_root=image_root, state_root=ocirt.root)
    gone = pull.ensure_absent(image_root, name, force=True)
    assert gone["changed"] and not [a for a in gone["actions"] if a.startswith("collect layers")]
    assert "root:x:0:0" in run_ok(ocirt, path)
    bundle.remove(path, ocirt.root)
    # The next collection (any absent) takes what only the removed bundle held.
    present(env, image_root, "test/app:1")
    pull.ensure_absent(image_root, env["basic"].host + "/test/app:1")
    assert store_files(image_root) == []


def test_a_read_only_image_root_and_a_new_digest_gives_a_fresh_root(env, image_root, tmp_path, ocirt):
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle
    pki, host = env["pki"], env["basic"].host
    rs.push(pki, env["layout"], "base", host + "/test/ro:1")
    name = present(env, image_root, "test/ro:1")["image"]["name"]
    path = str(tmp_path / "ro")
    options = {"args": ["sh", "-c", "touch /x 2>/dev/null && echo writable || echo read-only; cat /etc/version"],
               "readonly_rootfs": True}
    bundle.ensure(path, options, image=name, image_root=image_root, state_root=ocirt.root)
    result = ocirt.run(path)
    assert result.stdout.startswith("read-only\n")
    again = bundle.ensure(path, options, image=name, image_root=image_root, state_root=ocirt.root)
    assert again["changed"] is False
    rs.push(pki, env["layout"], "v2", host + "/test/ro:1")
    present(env, image_root, "test/ro:1", pull="always")
    moved = bundle.ensure(path, options, image=name, image_root=image_root, state_root=ocirt.root)
    assert moved["changed"] and moved["config"] != again["config"]
    assert ocirt.run(path).stdout == "read-only\n2\n"
    bundle.remove(path, ocirt.root)


# -- through Ansible: the role's container_image, via the controller, and the module's output -----------------

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The container from a registry image
      ansible.builtin.include_role:
        name: daemonless.oci.container
      vars:
        container_args: [sh, -c, "cat /etc/version 2>/dev/null; exec sleep 1000"]
        container_image_ca_path: "{{ ca }}"
        container_image_username: "{{ user }}"
        container_image_password: "{{ password }}"
        container_image_pull: always
        container_readonly_rootfs: false

    - name: Keep the result for the test
      ansible.builtin.copy:
        content: "{{ {'container': container_result, 'image': container_image_result | default({})} | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
      when: container_state != 'absent'
"""


def playbook(tmp_path, extra, check=False):
    from helpers import REPO
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK)
    env = ansible_env(stdout_callback=None)
    argv = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", str(book),
            "-e", json.dumps(extra)] + (["--check"] if check else [])
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    return result


def changed_tasks(output):
    """The role's tasks that reported a change (the test's own result copy left out)."""
    found, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6:].split("]")[0]
        elif line.startswith("changed:") and task != "Keep the result for the test":
            found.append(task)
    return found


def role_tasks(output):
    """The role's task rounds of a run (run or skipped), in order: the test's own result copy left out."""
    return [line[6:].split("]")[0] for line in output.splitlines()
            if line.startswith("TASK [") and not line.startswith("TASK [Keep the result for the test]")]


def test_the_role_pulls_and_a_new_digest_recreates_the_container(env, tmp_path, state_root):
    pki, host = env["pki"], env["basic"].host
    rs.push(pki, env["layout"], "base", host + "/test/rolled:1")
    result_file = tmp_path / "result.json"
    extra = dict(container_name="rolled-" + os.urandom(3).hex(), container_image=host + "/test/rolled:1",
                 container_image_root=str(tmp_path / "images"), container_bundle_dir=str(tmp_path / "bundle"),
                 container_state_root=state_root, ca=pki.ca, user=rs.USER, password=rs.PASSWORD,
                 result_file=str(result_file), container_state="running")
    first = playbook(tmp_path, extra)
    assert first.returncode == 0, first.stdout
    assert rs.PASSWORD not in first.stdout
    pid = json.loads(result_file.read_text())["container"]["container"]["pid"]
    again = playbook(tmp_path, extra)
    assert again.returncode == 0 and changed_tasks(again.stdout) == [], again.stdout
    assert json.loads(result_file.read_text())["container"]["container"]["pid"] == pid
    # Unchanged, a registry image costs one task more than the role's four: its oci_image task.
    ran = role_tasks(again.stdout)
    assert ran[0] == "The container from a registry image" and len(ran[1:]) == 5, ran
    assert [name.split(" : ", 1)[1] for name in ran[2:]] == [
        "Check the variables and look at the host", "Pull the image into the host's store",
        "Remove the container, or prepare the host", "Bring the container to the wanted state"], ran
    rs.push(pki, env["layout"], "v2", host + "/test/rolled:1")
    # Check mode downloads nothing, and still says that the new digest recreates the container.
    checked = playbook(tmp_path, extra, check=True)
    assert checked.returncode == 0, checked.stdout
    assert changed_tasks(checked.stdout) == ["daemonless.oci.container : Pull the image into the host's store",
                                             "daemonless.oci.container : Bring the container to the wanted state"], \
        checked.stdout
    assert json.loads(result_file.read_text())["container"]["container"]["pid"] == pid
    moved = playbook(tmp_path, extra)
    assert moved.returncode == 0, moved.stdout
    after = json.loads(result_file.read_text())
    assert after["image"]["changed"] and after["container"]["container"]["pid"] != pid
    from helpers import Ocirt
    assert Ocirt(state_root)("exec", extra["container_name"], "cat", "/etc/version").stdout == "2\n"
    gone = playbook(tmp_path, dict(extra, container_state="absent"))
    assert gone.returncode == 0, gone.stdout
    assert not os.path.exists(extra["container_bundle_dir"])


def test_the_role_pulls_on_the_controller_and_copies_only_missing_blobs(env, tmp_path, state_root):
    pki, host = env["pki"], env["basic"].host
    result_file = tmp_path / "result.json"
    host_root = str(tmp_path / "host-images")
    # The host has the base image already: only the app's own layer, config and manifest travel.
    present(env, host_root, "test/busybox:1")
    extra = dict(container_name="via-" + os.urandom(3).hex(), container_image=host + "/test/app:1",
                 container_image_root=host_root, container_image_via_controller=True,
                 container_image_controller_root=str(tmp_path / "controller-images"),
                 container_bundle_dir=str(tmp_path / "bundle"), container_state_root=state_root, ca=pki.ca,
                 user=rs.USER, password=rs.PASSWORD, result_file=str(result_file), container_state="running")
    first = playbook(tmp_path, extra)
    assert first.returncode == 0, first.stdout
    image = json.loads(result_file.read_text())["image"]
    copied = [a for a in image["actions"] if a.startswith("import ")]
    assert len(copied) == 3 and ("import " + Store(host_root).lookup(host + "/test/busybox:1")["layers"][0]["digest"]
                                 not in copied)
    assert Store(host_root).lookup(host + "/test/app:1")["manifest"] == image["image"]["manifest_digest"]
    assert not os.path.exists(os.path.join(host_root, "incoming", extra["container_name"]))
    again = playbook(tmp_path, extra)
    assert again.returncode == 0 and changed_tasks(again.stdout) == [], again.stdout
    # (The container goes with the state_root fixture; the role's absent path is the test above's.)


def test_the_module_never_prints_a_password(env, tmp_path):
    from helpers import REPO
    wrong = "Wr0ng-pa55word-for-the-test"
    env_vars = ansible_env(stdout_callback=None)
    argv = [os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-vvv",
            "-m", "daemonless.oci.oci_image", "-a", json.dumps(dict(
                name=env["basic"].host + "/test/busybox:1", username=rs.USER, password=wrong, ca_path=env["pki"].ca,
                image_root=str(tmp_path / "images")))]
    result = subprocess.run(argv, env=env_vars, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    assert result.returncode != 0 and "refused the username and password" in result.stdout, result.stdout
    assert wrong not in result.stdout and "Traceback" not in result.stdout


def test_without_overlayfs_the_layers_are_copied_with_a_warning(env, image_root, tmp_path, ocirt, monkeypatch):
    # overlayfs exists on every host these tests run on: its absence is the one thing simulated here.
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle, image_rootfs
    from helpers import run_ok
    monkeypatch.setattr(image_rootfs, "overlay_supported", lambda: False)
    name = present(env, image_root, "test/app:1")["image"]["name"]
    path = str(tmp_path / "copied")
    result = bundle.ensure(path, {"args": ["cat", "/app/hello"]}, image=name, image_root=image_root,
                           state_root=ocirt.root)
    assert result["warnings"] == [image_rootfs.COPY_WARNING]
    assert "org.daemonless.oci.rootfs.overlay" not in (result["config"].get("annotations") or {})
    assert os.path.isfile(os.path.join(path, "rootfs", "app", "hello"))
    assert not os.path.isdir(os.path.join(image_root, "layers", "sha256")) or \
        os.listdir(os.path.join(image_root, "layers", "sha256")) == []
    assert run_ok(ocirt, path) == "hello from app\n"
    bundle.remove(path, ocirt.root)


def test_a_killed_container_leaves_no_overlay_mount(env, image_root, tmp_path, ocirt):
    import signal
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle
    from helpers import create_and_start, wait_status
    name = present(env, image_root, "test/busybox:1")["image"]["name"]
    path = str(tmp_path / "crash")
    bundle.ensure(path, {"args": ["sleep", "1000"]}, image=name, image_root=image_root, state_root=ocirt.root)
    pid = create_and_start(ocirt, path, "crash-1")
    with open("/proc/%d/mountinfo" % pid) as handle:
        assert any(" overlay " in line and line.split()[4] == "/" for line in handle)
    os.kill(pid, signal.SIGKILL)
    wait_status(ocirt, "crash-1", "stopped")
    assert host_overlay_mounts(path) == []
    ocirt("delete", "crash-1")
    assert host_overlay_mounts(path) == []
    bundle.remove(path, ocirt.root)
