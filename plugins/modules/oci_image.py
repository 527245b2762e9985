#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_image
short_description: Pull an image from a registry into the host's image store, or remove it
version_added: 0.2.0
description:
  - Pulls O(name) from its registry over the OCI distribution API into the image store at
    O(image_root), for M(daemonless.oci.oci_bundle)'s O(daemonless.oci.oci_bundle#module:image) option.
  - Blobs are content-addressed and shared between images; every manifest and blob is checked
    against its sha256 before it enters the store, and a name points at an image only once all of
    it is there. Two pulls on one host at once take turns (a lock on the store).
  - Layers download in parallel, and where the host has overlayfs each layer is unpacked into the
    store as it arrives (with the archive defences of M(daemonless.oci.oci_bundle); what they
    dropped, such as device nodes, comes back as warnings), so the first container from the image
    starts without unpacking anything.
  - The registry's challenge decides the authentication (Bearer tokens from its token service,
    anonymously or with O(username)/O(password), or Basic). A redirect to another host (blob
    storage) never carries the credentials. Rate limits (429) and server errors are retried with
    a bounded backoff; a broken download resumes where it stopped.
  - Image indexes and Docker manifest lists are resolved to O(platform); OCI and Docker schema 2
    manifests; gzip, zstd (needs the C(zstd) command to unpack) and uncompressed layers.
  - O(state=absent) removes the name, then collects the blobs and layers nothing else references;
    what a bundle still uses is never collected.
  - O(state_root) says where the containers are whose bundles use the image - RV(image.containers) lists
    them, and a refused O(state=absent) names them.
author:
  - daemonless.oci maintainers (@daemonless)
extends_documentation_fragment:
  - daemonless.oci.image_root
  - daemonless.oci.state_root
attributes:
  check_mode:
    support: full
    description: Asks the registry for the digest the name has now (no blob is downloaded) and reports whether a pull would change the store.
  diff_mode:
    support: full
    description: Shows the digest the name had and has.
options:
  name:
    description:
      - The image, with its registry - C(registry[:port]/repository:tag) or C(registry/repository@sha256:...)
        (a pinned digest). C(docker.io/library/nginx:1.27) for Docker Hub.
      - A name without a registry (C(nginx:1.27)) is refused, never completed with a guessed registry.
    type: str
    required: true
  state:
    description: V(present) pulls the image as O(pull) says; V(absent) removes the name from the store.
    type: str
    choices: [present, absent]
    default: present
  pull:
    description:
      - V(missing) pulls only when the name is not in the store (no network use when it is);
        V(always) asks the registry each time and downloads what changed (a re-pushed tag);
        V(never) only uses the store, failing when the name is not there.
    type: str
    choices: [missing, always, never]
    default: missing
  platform:
    description: C(os/architecture[/variant]) to pick from a multi-platform image; default the host's (C(linux/amd64), C(linux/arm64/v8)).
    type: str
  username:
    description: User name for the registry (or its token service).
    type: str
  password:
    description: Password or token for O(username).
    type: str
  auth_file:
    description:
      - >-
        A credentials file in the C(containers-auth.json) / docker C(config.json) format
        (C({"auths": {"registry": {"auth": "base64(user:password)"}}})), used when O(username) is not given.
    type: path
  validate_certs:
    description: Check the registry's TLS certificate. V(false) is unsafe.
    type: bool
    default: true
  ca_path:
    description: A PEM file of CA certificates to check the registry's certificate with.
    type: path
  timeout:
    description: Seconds a connection or read may take before it is abandoned (and retried).
    type: int
    default: 30
  force:
    description:
      - With O(state=absent), remove the name even while bundles use it; the layers they use stay until they are gone.
      - Without it, the removal of a name that bundles use fails, naming the bundles and the containers of
        O(state_root) created from them.
    type: bool
    default: false
  import_from:
    description:
      - Instead of pulling, take the image from this directory on the host - its C(image.json)
        (C(digest) and C(manifest), as this module returns them as RV(image.digest) and
        RV(image.manifest_digest)) and the blobs the store lacks, as files named by their sha256 hex.
        Every blob is checked as a download would be. What the role's C(container_image_via_controller) copies.
    type: path
seealso:
  - module: daemonless.oci.oci_image_info
  - module: daemonless.oci.oci_bundle
'''

EXAMPLES = r'''
- name: Pull nginx from Docker Hub
  daemonless.oci.oci_image:
    name: docker.io/library/nginx:1.27

- name: Pull from a private registry with its own CA, credentials from an auth file
  daemonless.oci.oci_image:
    name: registry.example.com:5000/team/app:2.3
    ca_path: /etc/pki/registry-ca.pem
    auth_file: /root/.config/containers/auth.json
    pull: always
  register: app_image

- name: Remove an image and collect its layers
  daemonless.oci.oci_image:
    name: registry.example.com:5000/team/app:2.2
    state: absent
'''

RETURN = r'''
image:
  description: The image (after the task; in check mode, what the registry reports).
  returned: when O(state=present), or the name existed
  type: dict
  contains:
    name:
      description: The canonical name.
      type: str
    digest:
      description: The digest the name resolves to at the registry (an index's for a multi-platform image).
      type: str
      sample: sha256:25a9c8427d7e2440e2de7bbc661f30f48a19cc692f050fb269fcb2df1805bc79
    manifest_digest:
      description: The digest of the image manifest for the platform.
      type: str
    config_digest:
      description: The digest of the image configuration.
      type: str
    size:
      description: Bytes of the manifest, configuration and compressed layers.
      type: int
    platform:
      description: C(os/architecture[/variant]) of the image.
      type: str
    config:
      description: The image's configuration.
      type: dict
      contains:
        entrypoint: {description: Entrypoint., type: list, elements: str}
        cmd: {description: Command., type: list, elements: str}
        env: {description: Environment (C(NAME=value)), type: list, elements: str}
        user: {description: User., type: str}
        working_dir: {description: Working directory., type: str}
        exposed_ports: {description: Exposed ports (C(8080/tcp))., type: list, elements: str}
        labels: {description: Labels., type: dict}
    layers:
      description: Digests of the compressed layers, lowest first.
      type: list
      elements: str
    used_by:
      description: Bundle directories built from the image.
      type: list
      elements: str
    containers:
      description: Ids of the containers of O(state_root) whose bundle is built from the image, as M(daemonless.oci.oci_image_info) reports them.
      type: list
      elements: str
      returned: when RV(image.used_by) is
actions:
  description: What was done (or would be, in check mode) - downloads, the name set, blobs and layers collected.
  returned: always
  type: list
  elements: str
downloaded_bytes:
  description: Bytes received from the registry (manifests and blobs).
  returned: when O(state=present)
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import image_argument_spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def main():
    module = AnsibleModule(argument_spec=image_argument_spec(), supports_check_mode=True)
    from ansible_collections.daemonless.oci.plugins.module_utils._image import pull
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import image_rootfs
    params = module.params
    try:
        if params['state'] == 'absent':
            result = pull.ensure_absent(params['image_root'], params['name'], force=params['force'],
                                        check_mode=module.check_mode, state_root=params['state_root'])
            before = dict(digest=(result['image'] or {}).get('digest'))
        elif params['import_from']:
            result = pull.import_image(params['image_root'], params['name'], params['import_from'],
                                       check_mode=module.check_mode, state_root=params['state_root'])
            before = result.pop('before')
        else:
            result = pull.ensure_present(params['image_root'], params['name'], pull=params['pull'],
                                         platform=params['platform'], username=params['username'],
                                         password=params['password'], auth_file=params['auth_file'],
                                         validate_certs=params['validate_certs'], ca_path=params['ca_path'],
                                         timeout=params['timeout'], check_mode=module.check_mode,
                                         unpack=image_rootfs.pull_unpacker(), state_root=params['state_root'])
            before = result.pop('before')
            warnings = result.pop('warnings', None)
            if warnings:
                result['warnings'] = warnings  # exit_json shows each one (from unpacking the layers)
    except OCIError as exc:
        module.fail_json(msg="image %s: %s" % (params['name'], exc))
    if module._diff:
        after = dict(digest=None if params['state'] == 'absent' else result['image'].get('digest'))
        result['diff'] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
