"""oci_bundle's mounts (_bundle/config.py): an error names the option's own index.

config.json lists the default mounts first, so the runtime's index of a
task's mount is not the one the task wrote; the bundle layer checks the
option itself, before config.json is built.
"""
import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import config as bundle_config
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

GOOD = {"destination": "/data", "type": "tmpfs", "source": "tmpfs"}


def test_the_default_mounts_come_first_so_their_count_would_shift_the_index():
    assert len(spec.default_config()["mounts"]) > 0


@pytest.mark.parametrize("mounts, message", [
    ([{"destination": "../../../etc", "source": "/tmp"}], "mounts[0].destination: must be an absolute path"),
    ([GOOD, {"destination": "relative", "source": "/tmp"}], "mounts[1].destination: must be an absolute path"),
    ([{"source": "/tmp"}], "mounts[0].destination: is required"),
    ([{"destination": 5}], "mounts[0].destination: must be a string"),
    ([{"destination": "/a\0b"}], "mounts[0].destination: must not contain NUL"),
    ([GOOD, GOOD, {"destination": "/x", "type": 1}], "mounts[2].type: must be a string"),
    ([{"destination": "/x", "source": "/tmp", "options": "ro"}], "mounts[0].options: must be a list of strings"),
    ([GOOD, "/dev/pts"], "mounts[1]: must be an object"),
    ([GOOD, {"destination": "/scratch"}], "mounts[1].type: required for a mount without a source (tmpfs, proc, ...)"),
    ([GOOD, {"destination": "/b", "type": "bind"}], "mounts[1].source: required for a bind mount"),
    ("not a list", "mounts: must be a list"),
])
def test_a_bad_mount_is_an_error_naming_the_options_own_index(mounts, message):
    with pytest.raises(OCIError) as caught:
        bundle_config.build_config({"mounts": mounts})
    assert str(caught.value) == message


def test_a_missing_bind_source_names_the_options_index_and_the_path(tmp_path):
    present = tmp_path / "present"
    present.mkdir()
    mounts = [{"source": str(present), "destination": "/a"}, GOOD,
              {"source": "/nonexist-daemonless-oci", "destination": "/data"}]
    with pytest.raises(OCIError) as caught:
        bundle_config.check_mount_sources(mounts, str(tmp_path))
    assert str(caught.value) == "mounts[2].source /nonexist-daemonless-oci: No such file or directory"


def test_a_relative_bind_source_is_the_bundles_and_a_non_bind_source_is_not_a_path(tmp_path):
    (tmp_path / "data").mkdir()
    bundle_config.check_mount_sources([{"source": "data", "destination": "/data"},
                                       {"source": "tmpfs", "type": "tmpfs", "destination": "/t"}], str(tmp_path))
    with pytest.raises(OCIError, match=r"^mounts\[0\]\.source %s/other: No such file" % tmp_path):
        bundle_config.check_mount_sources([{"source": "other", "destination": "/o", "type": "none",
                                            "options": ["rbind"]}], str(tmp_path))
