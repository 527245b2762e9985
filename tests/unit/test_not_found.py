"""NotFound: the typed error for an id that is not in the state root, and the callers that rely on its type."""
import fcntl
import os
import threading
import time

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import cli, state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import NotFound, OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle


def test_not_found_is_an_oci_error():
    assert issubclass(NotFound, OCIError)


@pytest.mark.parametrize("operation", [
    lambda root: state.Container.open(root, "ghost"),
    lambda root: lifecycle.state(root, "ghost"),
    lambda root: lifecycle.start(root, "ghost"),
    lambda root: lifecycle.kill(root, "ghost", 15),
    lambda root: lifecycle.delete(root, "ghost"),
    lambda root: lifecycle.wait(root, "ghost"),
    lambda root: lifecycle.log_source(root, "ghost"),
    lambda root: lifecycle.update(root, "ghost", {"pids": {"limit": 5}}),
])
def test_every_operation_on_an_unknown_id_raises_not_found_naming_it(tmp_path, operation):
    with pytest.raises(NotFound) as caught:
        operation(str(tmp_path))
    assert str(caught.value) == "container ghost: does not exist"
    assert os.listdir(str(tmp_path)) == []


def test_a_container_deleted_while_we_waited_for_its_lock_is_not_found(tmp_path):
    """The directory still resolves when open() starts, but is gone once the lock is ours."""
    root = str(tmp_path)
    path = os.path.join(root, "gone")
    os.mkdir(path)
    holder = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    outcome = []

    def opener():
        try:
            state.Container.open(root, "gone").close()
            outcome.append("opened")
        except OCIError as exc:
            outcome.append(exc)
    thread = threading.Thread(target=opener)
    thread.start()
    try:
        # Until the opener holds its own descriptor of the directory (then it blocks in flock).
        while thread.is_alive() and _open_descriptors_of(path) < 2:
            time.sleep(0.001)
        os.rmdir(path)
    finally:
        os.close(holder)
        thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], NotFound), outcome
    assert str(outcome[0]) == "container gone: does not exist"


def _open_descriptors_of(path):
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + name) == path:
                count += 1
        except OSError:
            pass
    return count


def test_delete_force_of_an_unknown_id_succeeds_and_without_force_fails(tmp_path, capsys):
    root = str(tmp_path)
    lifecycle.delete(root, "ghost", force=True)
    assert cli.main(["--root", root, "delete", "--force", "ghost"]) == 0
    assert cli.main(["--root", root, "delete", "ghost"]) == 1
    assert capsys.readouterr().err == "ocirt: container ghost: does not exist\n"


def test_delete_force_still_fails_on_other_errors(tmp_path):
    """Only absence is a success for --force: a bad id is still an error."""
    with pytest.raises(OCIError) as caught:
        lifecycle.delete(str(tmp_path), "../escape", force=True)
    assert not isinstance(caught.value, NotFound)


def test_the_module_backend_sees_an_unknown_id_as_absent(tmp_path):
    assert container_state.observe(str(tmp_path), "ghost") == (None, None)
    assert container_state.log_tail(str(tmp_path), "ghost", 5) == []
