#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_bundle
short_description: Make an OCI bundle (config.json and root filesystem) match a declaration
version_added: 0.1.0
description:
  - Makes the bundle directory O(path) hold a root filesystem and a C(config.json) as declared,
    idempotently, for M(daemonless.oci.oci_container_state) to run.
  - The root filesystem comes from O(rootfs_from) - a directory (used in place, or copied with
    O(rootfs_copy)), a rootfs tarball (plain, gzip or zstd; C(docker export) style), or an OCI
    image layout directory such as C(skopeo copy ... oci:DIR:TAG) writes. Layer digests are
    verified, whiteouts applied, and nothing in an image can write outside the root filesystem.
    An unchanged source is not unpacked again.
  - C(config.json) starts from a default equal to C(runc spec)'s, takes the image's entrypoint,
    command, environment, working directory and user, then the task's options, then
    O(config) merged over everything. It is rewritten only when its content changes.
extends_documentation_fragment:
  - daemonless.oci.changes
  - daemonless.oci.image_root
  - daemonless.oci.state_root
attributes:
  check_mode:
    description: Reports what would change and writes nothing.
  diff_mode:
    description: Shows the change to C(config.json).
options:
  path:
    description:
      - The bundle directory. Missing parent directories are made.
      - It must be a directory or not exist yet; a symbolic link or a file there is an error.
      - Made all or nothing - when the bundle cannot be made (a corrupt or truncated image, a bad option), the
        directories the task made are removed, and an existing bundle is left as it was.
    type: path
    required: true
  state:
    description:
      - V(present) makes the bundle match; V(absent) removes the directory.
      - V(absent) refuses while a container of O(state_root) uses the bundle, unless O(force=true),
        which deletes those containers first.
    type: str
    choices: [present, absent]
    default: present
  force:
    description: With O(state=absent), delete the containers that use the bundle.
    type: bool
    default: false
  rootfs_from:
    description:
      - A root filesystem directory, a rootfs tarball, or an OCI image layout directory
        (recognized by its C(oci-layout) file).
      - Optional once the bundle has a root filesystem.
      - In check mode a source that does not exist yet (an earlier task, itself in check mode, would make it)
        is reported as to be unpacked, not an error.
    type: path
  rootfs_copy:
    description: Copy a directory O(rootfs_from) into the bundle instead of using it in place.
    type: bool
    default: false
  rootfs_check:
    description:
      - How a root filesystem source already unpacked or copied is known to be unchanged.
      - For a tarball, V(identity) compares its device, inode, size, modification and change times with those
        recorded when its digest was computed, and reads it again only when one differs; an unchanged bundle then
        costs a C(stat), not a read of the whole file. A file rewritten in place with the same size and with
        its modification and change times set back (which needs the clock or the file system itself to be
        changed) would be missed. V(digest) computes its sha256 on every run.
      - For a directory copied (O(rootfs_copy=true)), V(identity) walks the tree's metadata (every entry's name,
        type, mode, size, owner, inode, modification and change times) and opens no file; a file rewritten,
        replaced, touched or chmodded anywhere in the tree has a new change time, which no user can set back,
        and is copied again; the same blind spot as for a tarball remains. V(digest) also reads the content of
        every file (and every link's target) on every run.
      - An OCI image layout is always identified by its C(index.json), a directory used in place by its path.
    type: str
    choices: [identity, digest]
    default: identity
  image:
    description:
      - An image in the store at O(image_root) (pulled with M(daemonless.oci.oci_image)), by its full name
        (C(registry/repository:tag)). Exclusive with O(rootfs_from).
      - The root filesystem is an overlay of the image's layers, each unpacked once in the store and shared
        read-only by every bundle, with this bundle's own upper directory (C(overlay/upper)) taking the
        container's writes. The runtime mounts it inside the container's mount namespace at create, from the
        annotation C(org.daemonless.oci.rootfs.overlay) written into C(config.json); nothing is mounted on the
        host. Where the kernel has no overlayfs, the layers are copied into C(rootfs), with a warning.
      - The image's configuration supplies the defaults of O(args), O(env), O(cwd) and O(user).
      - A different digest for the name (after a pull) gives the bundle a fresh root filesystem.
      - M(daemonless.oci.oci_container_state) empties the upper directory when it recreates the container from
        a changed configuration (a new container starts from its image, as with podman and docker); a
        restart keeps it.
    type: str
  image_ref:
    description: In an OCI image layout, the tag (C(org.opencontainers.image.ref.name)) or manifest digest to use.
    type: str
  platform:
    description: In an OCI image layout with several platforms, C(os/architecture[/variant]); default the host's.
    type: str
  max_unpacked_size:
    description:
      - The most an unpacked root filesystem (from a tarball, an OCI image layout or a copied directory) may
        take, in bytes or with a unit (C(512M), C(20G)); unpacking stops there, fails, and leaves the bundle
        as it was.
      - File contents count, and 512 bytes for each entry, so that neither a small archive that decompresses
        to a huge one nor one of millions of empty files can fill the disk.
      - Default the free space of the bundle's filesystem less 5 % of its size.
    type: str
  args:
    description: The command and its arguments (default the image's entrypoint and command, else C(sh)).
    type: list
    elements: str
  env:
    description:
      - Environment variables, merged over the image's and O(env_file)'s.
      - A name follows the rule of O(env_file)'s names, and a bad one fails the task. It must not be empty, nor hold
        C(=), a blank or NUL; a leading digit is allowed, as docker allows it, though a POSIX shell cannot expand
        such a variable.
      - A value is a string, or an integer, which becomes its decimal text (YAML's unquoted C(8080) for C(PORT)
        gives C(PORT=8080)). A boolean, null, float, list or dict fails the task, naming the variable, since YAML
        reads C(yes), C(~) and C(1.10) as V(true), null and C(1.1); quote such values (C("yes")) to pass their text.
    type: dict
  env_file:
    description:
      - Files on the managed host of environment variables, merged over the image's and under O(env); later files
        win. For a file on the controller, give its variables in O(env) through C(lookup('ansible.builtin.file', ...)),
        as the examples show.
      - One C(KEY=VALUE) per line, the value verbatim after the first C(=) (no quotes removed, no C($VAR)
        expanded); blank lines and lines starting with C(#) are skipped; a trailing carriage return is dropped.
      - A line with a C(KEY) alone fails the task (podman would take the managed host's value; this module does not),
        as do a bad name, a file that is not UTF-8 text or larger than 1 MiB.
      - A change of a file's content changes C(config.json), so M(daemonless.oci.oci_container_state) recreates the
        container.
    type: list
    elements: path
  cwd:
    description: Working directory inside the container.
    type: str
  user:
    description:
      - The user the process runs as, C(user), C(user:group), C(uid) or C(uid:gid) (V(nobody), V(www-data:www-data),
        V(1000), V(1000:1000)), also as the image's own C(User) setting.
      - Names are looked up in the image's C(/etc/passwd) and C(/etc/group), never the host's, and fail the task
        when the image lacks them. A user's primary group is its C(/etc/passwd) group (group 0 for a uid the image
        does not name), and its supplementary groups (C(process.user.additionalGids)) are the C(/etc/group) groups
        that list it, unless a group is given, as podman does.
      - The image's files are read inside its root filesystem (a symbolic link cannot lead out of it) and may be
        at most 1 MiB; malformed lines are ignored.
      - In check mode before the root filesystem is first unpacked, a name cannot be looked up yet and shows as
        uid 0 in the diff.
    type: str
  hostname:
    description: The container's hostname.
    type: str
  terminal:
    description: Give the process a terminal.
    type: bool
  readonly_rootfs:
    description:
      - Mount the root filesystem read-only (the default config's choice is read-only).
      - For a bundle from O(image), the default is V(false), as in podman.
    type: bool
    aliases: [read_only]
  mounts:
    description:
      - Extra mounts. A mount at the destination of a default mount replaces it.
      - Each has C(destination), and C(source), C(type) (default C(bind) when a source is given) and C(options).
      - A bad mount fails the task before the bundle changes, its error naming the option's own index
        (C(mounts[0]) for the first), as does a bind mount whose C(source) does not exist on the managed host
        (a relative one is relative to the bundle). In check mode a missing source is not an error, since an earlier
        task may make it.
    type: list
    elements: dict
  capabilities:
    description: Capabilities to C(add) to or C(drop) from the default set (names with or without C(CAP_); C(ALL)).
    type: dict
  namespaces:
    description: The namespaces, as type names or C({type, path}) to join an existing one; replaces the default list.
    type: list
    elements: raw
  devices:
    description: Devices to create in C(/dev) (C(linux.devices) entries).
    type: list
    elements: dict
  sysctl:
    description: Namespaced kernel parameters.
    type: dict
  annotations:
    description: Annotations.
    type: dict
  memory:
    description: Memory limit, in bytes or with a unit (C(256M), C(1G)).
    type: str
  memory_swap:
    description: Memory plus swap limit, as O(memory).
    type: str
  memory_reservation:
    description: Memory soft limit, as O(memory).
    type: str
  cpus:
    description: CPU limit as a number of CPUs (C(1.5)).
    type: str
  cpu_shares:
    description: Relative CPU weight (cgroup v1 shares).
    type: int
  cpuset_cpus:
    description: CPUs the container may use (C(0-1,3)).
    type: str
  pids_limit:
    description: Maximum number of processes; V(-1) or V(0) for no limit (as docker's C(--pids-limit)).
    type: int
  cgroups_path:
    description: The container's cgroup path (absolute, or relative to the runtime's parent C(/ocirt)).
    type: str
  config:
    description: A config.json fragment merged over the result, for any field the options do not name.
    type: dict
seealso:
  - module: daemonless.oci.oci_container_state
'''

EXAMPLES = r'''
- name: Bundle from an image copied with skopeo (skopeo copy docker://busybox oci:/srv/images/busybox:latest)
  daemonless.oci.oci_bundle:
    path: /srv/bundles/web
    rootfs_from: /srv/images/busybox
    image_ref: latest
    args: [/bin/httpd, -f, -p, "8080"]
    memory: 256M
    cpus: "0.5"

- name: Bundle from an image pulled with daemonless.oci.oci_image (an overlay of the store's layers)
  daemonless.oci.oci_bundle:
    path: /srv/bundles/web
    image: docker.io/library/nginx:1.27
    read_only: true

- name: Bundle from a rootfs tarball, with a bind mount
  daemonless.oci.oci_bundle:
    path: /srv/bundles/job
    rootfs_from: /srv/images/job.tar.gz
    args: [/bin/sh, -c, "do-the-job > /data/out"]
    mounts:
      - source: /srv/data
        destination: /data

- name: A web server as the image's www-data user, its settings from a file on the managed host
  daemonless.oci.oci_bundle:
    path: /srv/bundles/web
    user: www-data
    env_file: [/etc/web/web.env]
    env:
      LOG_LEVEL: info

- name: Variables from a KEY=VALUE file on the controller (comments and blank lines skipped)
  daemonless.oci.oci_bundle:
    path: /srv/bundles/web
    env: "{{ dict(lookup('ansible.builtin.file', 'files/web.env').splitlines()
             | reject('match', '^\\s*(#|$)') | map('split', '=', 1)) }}"

- name: Remove a bundle and the containers using it
  daemonless.oci.oci_bundle:
    path: /srv/bundles/job
    state: absent
    force: true
'''

RETURN = r'''
path:
  description: The bundle directory.
  returned: always
  type: str
rootfs:
  description: The root filesystem directory the config points at.
  returned: when O(state=present)
  type: str
config:
  description: The C(config.json) content.
  returned: when O(state=present)
  type: dict
config_digest:
  description: The sha256 of C(config.json).
  returned: when O(state=present)
  type: str
  sample: sha256:0f1e...
image_digest:
  description: The manifest digest (OCI layout) or file digest (tarball) the root filesystem came from.
  returned: when O(state=present)
  type: str
actions:
  description: What was done (or would be, in check mode).
  returned: always
  type: list
  elements: str
msg:
  description: What was done to the bundle (or would be, in check mode), or that it was up to date.
  returned: always
  type: str
  sample: "bundle /srv/bundles/web: write /srv/bundles/web/config.json"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bytecode


def main():
    # The rest of the collection is imported once its compiled code can come from the host's cache.
    cache = bytecode.install()
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bundle_task
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import bundle_argument_spec
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.module_support import require_cffi
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
    module = AnsibleModule(argument_spec=bundle_argument_spec(), supports_check_mode=True)
    bytecode.persist(cache, not module.check_mode)
    require_cffi(module)
    try:
        result = bundle_task.run(module.params, check_mode=module.check_mode, diff=module._diff)
    except (OCIError, OSError, ValueError) as exc:
        # OSError and ValueError: whatever the checks missed still fails as a message, never a traceback.
        module.fail_json(msg=bundle_task.failure_message(module.params['path'], exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
