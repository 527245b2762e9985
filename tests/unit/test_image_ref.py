"""Image names (_image/reference.py): what is accepted, and bare names refused with what they could mean."""
import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._image import reference
from ansible_collections.daemonless.oci.plugins.module_utils._image.client import parse_challenge
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("quay.io/team/app:1.2", "quay.io", "team/app", "1.2", None),
    ("127.0.0.1:5000/a/b/c:tag_1", "127.0.0.1:5000", "a/b/c", "tag_1", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("registry.example.com:443/app@" + DIGEST, "registry.example.com:443", "app", None, DIGEST),
    ("ghcr.io/o/app:v1@" + DIGEST, "ghcr.io", "o/app", "v1", DIGEST),
    ("docker.io/nginx:1.27", "docker.io", "library/nginx", "1.27", None),
])
def test_full_names_parse(text, registry, repository, tag, digest):
    ref = reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.reference == (digest or tag)


def test_docker_hub_api_host():
    assert reference.parse("docker.io/library/alpine:3").api_host == "registry-1.docker.io"
    assert reference.parse("quay.io/x/y:1").api_host == "quay.io"


@pytest.mark.parametrize("text, meant", [
    ("nginx:1.27", "docker.io/library/nginx:1.27"),
    ("nginx", "docker.io/library/nginx:latest"),
    ("team/app:2", "docker.io/team/app:2"),
])
def test_a_bare_name_is_refused_naming_what_it_could_mean(text, meant):
    with pytest.raises(OCIError) as info:
        reference.parse(text)
    message = str(info.value)
    assert "names no registry" in message and meant in message and "quay.io/" in message


@pytest.mark.parametrize("text, needle", [
    ("quay.io/App:1", "repository component"),
    ("quay.io/app:bad/tag", "repository component"),
    ("quay.io/app:" + "t" * 200, "tag"),
    ("quay.io/app@sha256:1234", "sha256:<64"),
    ("quay.io/app@md5:" + "a" * 32, "sha256:<64"),
    ("quay.io/", "no repository"),
    ("quay.io/a b:1", "not an image name"),
    ("", "required"),
    ("bad_host.io:x/app", "not a registry"),
])
def test_malformed_names_are_refused(text, needle):
    with pytest.raises(OCIError) as info:
        reference.parse(text, field="name")
    assert needle in str(info.value) and str(info.value).startswith("name:")


def test_challenges_parse():
    scheme, params = parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                                     'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
    assert parse_challenge("") == ("", {})
