# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Media types and limits of the distribution API, apart from the client.

The client imports ansible.module_utils.urls (about 0.3 s of imports on a
small host); a pull that finds its image present needs only these names, and
must not pay for the HTTP stack.
"""

MAX_MANIFEST = 4 << 20   # what distribution itself accepts for a manifest
DEFAULT_TIMEOUT = 30

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
