"""The collection as users get it: `ansible-galaxy collection build`, install, and a playbook by FQCN.

The build runs on a copy of the tracked files (git ls-files) with decoys of
what must never be shipped planted in it (test output, a virtualenv, build/,
bytecode, benchmark results), so galaxy.yml's build_ignore is what keeps them
out. The installed copy is the only one the playbook can see: the repository's
own collection (.venv/collections) is kept off every path Ansible searches.
"""
import json
import os
import shutil
import subprocess
import tarfile
import textwrap

import pytest

import busybox_bundle
from helpers import REPO, WORDS_BY_ROOT, HostAudit, ansible_env, new_id, ocirt_cmd

VENV_BIN = os.path.join(REPO, ".venv", "bin")
GALAXY = os.path.join(VENV_BIN, "ansible-galaxy")
PLAYBOOK = os.path.join(VENV_BIN, "ansible-playbook")

# Relative paths planted in the copy before the build; none may be in the tarball.
DECOYS = (
    "tests/output/junit/result.xml",
    ".venv/bin/python",
    "build/demo/leftover",
    "plugins/modules/__pycache__/oci_bundle.cpython-311.pyc",
    "plugins/module_utils/stray.pyc",
    "bench/results/latest.json",
    ".hypothesis/examples/x",
    ".pytest_cache/v/cache/lastfailed",
)

PLAY = textwrap.dedent("""\
    ---
    - name: The installed collection by FQCN
      hosts: localhost
      gather_facts: false
      module_defaults:
        group/daemonless.oci.oci:
          state_root: "{{ state_root }}"
      tasks:
        - name: Remove the job
          daemonless.oci.oci_container_state:
            id: "{{ job_id }}"
            state: absent
          when: job_state == 'absent'

        - name: A bundle from the busybox rootfs
          daemonless.oci.oci_bundle:
            path: "{{ bundle }}"
            rootfs_from: "{{ rootfs }}"
            args: [sh, -c, "echo installed collection works; exit 7"]
          when: job_state == 'present'

        - name: Run it as a job
          daemonless.oci.oci_container_state:
            id: "{{ job_id }}"
            bundle: "{{ bundle }}"
            wait: exited
            timeout: 60
          register: job
          when: job_state == 'present'

        - name: Keep the job's result for the test
          ansible.builtin.copy:
            content: "{{ job | to_json }}"
            dest: "{{ result_file }}"
            mode: "0600"
          when: job_state == 'present'
    """)


def run(argv, env, cwd=None):
    """Run a command that must succeed; its standard output (warnings, such as the cryptography package's
    deprecations that ansible's imports trigger, go to standard error); on failure the assertion shows both."""
    result = subprocess.run(argv, env=env, cwd=cwd, check=False, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert result.returncode == 0, "%s failed (%d):\n%s%s" % (
        " ".join(argv), result.returncode, result.stdout, result.stderr)
    return result.stdout


def clean_env(collections):
    """The environment with only COLLECTIONS on Ansible's collection paths."""
    return ansible_env(stdout_callback=None, collections_path=collections)


def copy_tracked_files(dest):
    listed = subprocess.run(["git", "-C", REPO, "ls-files", "-z"], check=True,
                            stdout=subprocess.PIPE).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = os.path.join(REPO, rel)
        if not os.path.lexists(src):
            continue  # deleted in the work tree, not yet in the index
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)
    for rel in DECOYS:
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("must not be shipped\n")


def shipped_problems(names):
    """What in the tarball's member names must not be there."""
    bad = []
    for name in names:
        parts = name.split("/")
        if (parts[0] in ("build", "bench", "tools", ".venv", ".hypothesis", ".pytest_cache", "Makefile", ".gitignore")
                or name.startswith("tests/output") or "__pycache__" in parts or name.endswith(".pyc")):
            bad.append(name)
    return bad


@pytest.mark.skipif(shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")),
                    reason="needs a git checkout and the git command")
def test_built_collection_installs_and_runs_by_fqcn(tmp_path):
    base = str(tmp_path)
    source = os.path.join(base, "source")
    collections = os.path.join(base, "collections")
    state_root = os.path.join(base, "state")
    job_id = new_id("build")
    WORDS_BY_ROOT.setdefault(state_root, set()).add(job_id)
    audit = HostAudit(state_root, base)
    env = clean_env(collections)

    copy_tracked_files(source)
    run([GALAXY, "collection", "build", "--output-path", base, source], env)
    tarballs = [n for n in os.listdir(base) if n.startswith("daemonless-oci-") and n.endswith(".tar.gz")]
    assert len(tarballs) == 1, tarballs
    tarball = os.path.join(base, tarballs[0])

    with tarfile.open(tarball) as archive:
        names = [member.name.lstrip("./") for member in archive.getmembers()]
    assert "plugins/modules/oci_bundle.py" in names
    assert "roles/container/tasks/main.yml" in names
    assert "roles/container/meta/argument_specs.yml" in names
    assert shipped_problems(names) == []

    run([GALAXY, "collection", "install", "-p", collections, tarball], env)
    listed = json.loads(run([GALAXY, "collection", "list", "daemonless.oci", "--format", "json"], env))
    assert list(listed) == [os.path.join(collections, "ansible_collections")], listed

    rootfs = busybox_bundle.build_rootfs(os.path.join(base, "rootfs"))
    playbook = os.path.join(base, "play.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(PLAY)
    result_file = os.path.join(base, "job.json")
    extra = dict(state_root=state_root, job_id=job_id, bundle=os.path.join(base, "bundle"), rootfs=rootfs,
                 result_file=result_file)

    def play(job_state):
        variables = dict(extra, job_state=job_state)
        return run([PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", json.dumps(variables), playbook], env, cwd=base)

    try:
        play("present")
        with open(result_file, encoding="utf-8") as handle:
            job = json.load(handle)
        assert job["exit_code"] == 7, job
        assert job["logs_lines"] == ["installed collection works"], job
    finally:
        try:
            play("absent")
        finally:
            if os.path.isdir(state_root):
                ocirt_cmd(state_root, "delete", "--force", job_id, check=False)
            problems = audit.leftovers()
            shutil.rmtree(state_root, ignore_errors=True)
    assert problems == [], problems
