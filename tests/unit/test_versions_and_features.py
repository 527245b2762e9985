"""One collection version, one spec version, and a features document that says what is implemented."""
import json
import os

import pytest
import yaml

from helpers import REPO
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import cli, features, spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm, mounts


def version_tuple(text):
    return tuple(int(part) for part in text.split("-")[0].split(".")[:3])


def galaxy_version():
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        return yaml.safe_load(handle)["version"]


def test_the_runtime_version_is_galaxy_ymls():
    assert features.VERSION == galaxy_version()


def test_ocirt_version_prints_the_collection_and_spec_versions(capsys):
    assert cli.main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out == "ocirt version %s\nspec: %s\n" % (galaxy_version(), spec.OCI_VERSION)
    assert err == ""


def test_default_config_is_written_with_the_spec_version():
    assert spec.default_config()["ociVersion"] == spec.OCI_VERSION


def ocirt_features(capsys):
    assert cli.main(["features"]) == 0
    return json.loads(capsys.readouterr().out)


def test_features_range_holds_the_version_the_runtime_writes(capsys):
    document = ocirt_features(capsys)
    assert version_tuple(document["ociVersionMin"]) <= version_tuple(spec.OCI_VERSION) \
        <= version_tuple(document["ociVersionMax"])
    assert document["annotations"]["io.github.daemonless.oci.version"] == galaxy_version()


def test_features_report_the_lsm_labels_as_implemented(capsys):
    """The spec's `enabled` is about the runtime, not the host: these are implemented (setup/lsm.py)."""
    linux = ocirt_features(capsys)["linux"]
    assert linux["apparmor"] == {"enabled": True}
    assert linux["selinux"] == {"enabled": True}


def test_what_features_claim_for_the_lsms_is_there():
    """Each label claimed is written where the kernel takes it at exec: the procfs attr file of the
    process (AppArmor's own directory where the kernel has it), with the value each module expects."""
    proc_dir = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        labels = lsm.ExecLabels({"apparmorProfile": "docker-default",
                                 "selinuxLabel": "system_u:system_r:container_t:s0"}, proc_dir=proc_dir)
    finally:
        os.close(proc_dir)
    try:
        written = [(value, field) for _fd, value, field in labels.writes]
        attr_files = [os.readlink("/proc/self/fd/%d" % fd) for fd, _value, _field in labels.writes]
    finally:
        labels.close()
    assert written == [("exec docker-default", "process.apparmorProfile"),
                       ("system_u:system_r:container_t:s0", "process.selinuxLabel")]
    own = "/proc/%d/" % os.getpid()
    assert attr_files[0] in (own + "attr/apparmor/exec", own + "attr/exec"), attr_files
    assert attr_files[1] == own + "attr/exec", attr_files
    # linux.mountLabel, SELinux's other field, goes into the data of the mounts that take a context.
    assert lsm.mount_data("mode=755", "tmpfs", "system_u:object_r:container_file_t:s0") \
        == 'mode=755,context="system_u:object_r:container_file_t:s0"'


def test_features_claim_nothing_the_runtime_refuses(capsys, tmp_path):
    """idmapped mounts are refused here: features must say so; the systemd cgroup driver is taken."""
    linux = ocirt_features(capsys)["linux"]
    assert linux["mountExtensions"]["idmap"]["enabled"] is False
    with pytest.raises(OCIError, match="idmapped mounts"):
        mounts.parse_options(["rbind", "idmap"])
    assert linux["cgroup"]["systemd"] is True
    assert cli.main(["--systemd-cgroup", "--root", str(tmp_path), "list"]) == 0
