"""What the role daemonless.oci.container writes down instead of computing on every run."""
import os

import yaml

from helpers import REPO


def test_the_roles_collection_version_is_galaxys():
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    with open(os.path.join(REPO, "roles", "container", "vars", "main.yml")) as handle:
        role_vars = yaml.safe_load(handle)
    assert role_vars["__container_collection_version"] == version
