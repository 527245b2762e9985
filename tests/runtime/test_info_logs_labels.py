"""Labels (oci_container_state's `labels`, info's and facts' `labels` selector) and logs from playbooks
(oci_container_info's `logs_tail` and `logs_since`), on real containers.

Containers are made through oci_container_state's backend (container_state.run);
info and facts run as the real modules (ad-hoc `ansible` on localhost), so the
argument specs, the results and the failures are the ones a playbook sees.
The logs are the ones the containers' monitors write, rotated for real.
"""
import json
import os
import re
import subprocess

import pytest

from helpers import REPO, ansible_env, container_state_params, new_id, poll
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import logs as module_logs
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import logs as runtime_logs

LABEL = "org.daemonless.oci.label."
ROTATION_NOTICE = re.compile(r"^\[monitor: log rotation removed \d+ bytes of older output\]$")


@pytest.fixture
def params(state_root):
    """params(**overrides): oci_container_state's parameters as AnsibleModule fills them in (its argument
    spec's defaults), with a fresh id in STATE_ROOT."""
    def build(**overrides):
        # SIGKILL: sleep as PID 1 ignores SIGTERM, and a recreate would wait out stop_timeout.
        values = dict(stop_signal="SIGKILL")
        values.update(overrides)
        return container_state_params(state_root, values.pop("id", new_id("ll")), **values)
    return build


def run_module(module, args):
    """daemonless.oci.MODULE as an ad-hoc task on localhost: its result as a dict, with "failed"."""
    result = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-c", "local",
                             "-m", "daemonless.oci." + module, "-a", json.dumps(args)],
                            env=ansible_env(stdout_callback=None), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            check=False, timeout=300)
    # The ad-hoc (minimal) callback prints "localhost | STATUS => {json}".
    text = result.stdout[result.stdout.index("localhost | "):]
    outcome = json.loads(text[text.index("=>") + 2:])
    outcome["failed"] = text.startswith("localhost | FAILED")
    assert outcome["failed"] == (result.returncode != 0), result
    return outcome


def config_json(bundle):
    with open(os.path.join(bundle, "config.json")) as handle:
        return json.load(handle)


# --------------------------------------------------------------------------
# labels


def test_labels_are_annotations_of_the_container_and_a_changed_label_recreates(params, make_bundle):
    bundle = make_bundle(["sleep", "1000"])
    on_disk = config_json(bundle)
    p = params(bundle=bundle, labels={"app": "web", "replicas": 2, "canary": True})
    first = container_state.run(p)
    container = first["container"]
    assert container["labels"] == {"app": "web", "replicas": "2", "canary": "true"}
    assert container["annotations"][LABEL + "app"] == "web"
    assert config_json(bundle) == on_disk, "the bundle's config.json must not be changed"

    again = container_state.run(p)
    assert again["changed"] is False and again["container"]["pid"] == container["pid"]

    changed = container_state.run(dict(p, labels={"app": "api", "replicas": 2, "canary": True}))
    assert changed["changed"] and "delete" in " ".join(changed["actions"]), changed["actions"]
    assert any("annotations" in action for action in changed["actions"]), changed["actions"]
    assert changed["container"]["labels"]["app"] == "api"
    assert changed["container"]["pid"] != container["pid"]

    dropped = container_state.run(dict(p, labels=None))
    assert dropped["changed"] and dropped["container"]["labels"] == {}


@pytest.mark.parametrize("labels, named", [
    ({"app": ["a", "b"]}, "labels.app"),
    ({"app": {"nested": "x"}}, "labels.app"),
    ({"app": None}, "labels.app"),
    ({"": "x"}, "labels: label name ''"),
    ({"bad\nname": "x"}, "labels: label name 'bad\\nname'"),
    ({"big": "x" * 5000}, "labels.big"),
], ids=["list", "dict", "null", "empty-name", "control-char", "too-long"])
def test_bad_labels_fail_naming_the_label_and_make_nothing(params, make_bundle, state_root, labels, named):
    p = params(bundle=make_bundle(["sleep", "1000"]), labels=labels)
    with pytest.raises(OCIError) as caught:
        container_state.run(p)
    assert named in str(caught.value)
    assert not os.path.isdir(state_root) or [e for e in os.listdir(state_root) if e != "=monitor"] == []


def test_info_and_facts_select_by_labels(params, make_bundle, state_root):
    bundle = make_bundle(["sleep", "1000"])
    web = params(bundle=bundle, labels={"app": "web", "tier": "front"})
    api = params(bundle=bundle, labels={"app": "api", "tier": "front"})
    plain = params(bundle=bundle)
    for p in (web, api, plain):
        container_state.run(p)

    everything = run_module("oci_container_info", {"state_root": state_root})
    assert all("logs" not in c and "log_entries" not in c for c in everything["containers"]), "no log unless asked"
    assert sorted(c["id"] for c in everything["containers"]) == sorted([web["id"], api["id"], plain["id"]])
    by_id = dict((c["id"], c) for c in everything["containers"])
    assert by_id[web["id"]]["labels"] == {"app": "web", "tier": "front"} and by_id[plain["id"]]["labels"] == {}

    front = run_module("oci_container_info", {"state_root": state_root, "labels": {"tier": "front"}})
    assert sorted(c["id"] for c in front["containers"]) == sorted([web["id"], api["id"]])
    only_web = run_module("oci_container_info", {"state_root": state_root, "labels": {"tier": "front", "app": "web"}})
    assert [c["id"] for c in only_web["containers"]] == [web["id"]]
    named_but_not_matching = run_module("oci_container_info", {"state_root": state_root, "name": [api["id"]],
                                                               "labels": {"app": "web"}})
    assert named_but_not_matching["containers"] == [] and named_but_not_matching["missing"] == []

    facts = run_module("oci_container_facts", {"state_root": state_root, "labels": {"app": "api"}})
    assert list(facts["ansible_facts"]["oci_containers"]) == [api["id"]]
    assert facts["ansible_facts"]["oci_containers"][api["id"]]["labels"] == {"app": "api", "tier": "front"}

    bad = run_module("oci_container_facts", {"state_root": state_root, "labels": {"app": ["x"]}})
    assert bad["failed"] and "labels.app" in bad["msg"] and "Traceback" not in bad["msg"], bad


# --------------------------------------------------------------------------
# logs through oci_container_info


def test_info_returns_a_running_services_log_marked_by_stream(params, make_bundle, state_root):
    # stdout and stderr are two pipes that the monitor reads as they come: the pauses give the lines
    # an order that the test can expect across the two streams.
    service = params(bundle=make_bundle(["sh", "-c", "echo listening; usleep 200000; echo 'warn: slow disk' >&2; "
                                                     "usleep 200000; echo ready; exec sleep 1000"]),
                     labels={"app": "svc"})
    container_state.run(service)
    job = params(bundle=make_bundle(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; usleep 200000; "
                                                 "echo oops >&2"]), wait="exited")
    container_state.run(job)
    poll(lambda: len(module_logs.container_logs(state_root, service["id"])[0]) == 3, "the service's three lines")

    info = run_module("oci_container_info", {"state_root": state_root, "logs_tail": 10})
    by_id = dict((c["id"], c) for c in info["containers"])
    svc = by_id[service["id"]]
    assert svc["status"] == "running"
    assert svc["logs"] == ["listening", "warn: slow disk", "ready"]
    assert [(e["stream"], e["text"]) for e in svc["log_entries"]] == [
        ("stdout", "listening"), ("stderr", "warn: slow disk"), ("stdout", "ready")]
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", e["time"]) for e in svc["log_entries"])
    assert svc["logs_truncated"] is False
    assert by_id[job["id"]]["status"] == "stopped"
    assert by_id[job["id"]]["logs"] == ["line1", "line2", "line3", "line4", "line5", "oops"]

    tail = run_module("oci_container_info", {"state_root": state_root, "name": [job["id"]], "logs_tail": 2})
    assert [(e["stream"], e["text"]) for e in tail["containers"][0]["log_entries"]] == [
        ("stdout", "line5"), ("stderr", "oops")]

    by_label = run_module("oci_container_info", {"state_root": state_root, "labels": {"app": "svc"},
                                                 "logs_since": "1h"})
    assert [c["id"] for c in by_label["containers"]] == [service["id"]]
    assert by_label["containers"][0]["logs"] == ["listening", "warn: slow disk", "ready"]
    future = run_module("oci_container_info", {"state_root": state_root, "logs_since": "2999-01-01T00:00:00Z"})
    assert all(c["logs"] == [] for c in future["containers"]) and len(future["containers"]) == 2


@pytest.mark.parametrize("tail, since, named", [
    (None, "yesterday", "logs_since: yesterday"),
    (None, "2026-01-02T03:04:05+02:00", "logs_since: 2026-01-02T03:04:05+02:00"),
    (None, "2026-01", "logs_since: 2026-01"),
    (-1, None, "logs_tail: must be 0 to"),
    (10 ** 6, None, "logs_tail: must be 0 to"),
], ids=["words", "offset", "short", "negative", "huge"])
def test_bad_log_options_are_refused_naming_the_option(tail, since, named):
    with pytest.raises(OCIError) as caught:
        module_logs.validate(tail, since)
    assert named in str(caught.value)


def test_the_module_fails_on_a_bad_log_option_without_a_traceback(state_root):
    outcome = run_module("oci_container_info", {"state_root": state_root, "logs_since": "yesterday"})
    assert outcome["failed"] and "logs_since: yesterday" in outcome["msg"], outcome
    assert "Traceback" not in outcome["msg"] and "module_stderr" not in outcome, outcome


def test_huge_and_unfinished_lines_are_joined_cut_and_kept(params, make_bundle, state_root):
    # 40000 bytes on one line: the monitor logs it as 16 KiB P pieces and an F piece; then output
    # with no newline at all, which the monitor flushes as a P piece when the job ends.
    script = ("head -c 40000 /dev/zero | tr '\\0' x; echo; usleep 200000; echo after >&2; usleep 200000; "
              "printf 'no newline'")
    job = params(bundle=make_bundle(["sh", "-c", script]), wait="exited")
    assert container_state.run(job)["exit_code"] == 0
    entries, truncated = module_logs.container_logs(state_root, job["id"], tail=10)
    assert not truncated
    assert [e["stream"] for e in entries] == ["stdout", "stderr", "stdout"]
    big = entries[0]["text"]
    assert big == "x" * module_logs.LINE_MAX + " [... %d more bytes cut]" % (40000 - module_logs.LINE_MAX)
    assert entries[1]["text"] == "after" and entries[2]["text"] == "no newline"


def test_the_text_returned_per_container_is_capped_newest_kept(params, make_bundle, state_root, monkeypatch):
    job = params(bundle=make_bundle(["sh", "-c", "for i in $(seq 1 200); do echo line-$i; done"]), wait="exited")
    container_state.run(job)
    monkeypatch.setattr(module_logs, "TEXT_MAX", 10 * len("line-100"))
    entries, truncated = module_logs.container_logs(state_root, job["id"])
    assert truncated and [e["text"] for e in entries] == ["line-%d" % i for i in range(191, 201)]


def test_logs_of_a_service_rotating_its_log_while_it_is_read(params, make_bundle, state_root):
    # A service that writes fast into a 4 KiB log kept in 3 files: the monitor rotates it every few
    # dozen lines while the reads below run. Each read must be one consistent picture of the log:
    # stdout's and stderr's numbers consecutive (no line lost or read twice), each on its stream.
    # The pause lets the monitor write everything before the last line, so that "done" is last.
    script = ("i=0; while [ $i -lt 5000 ]; do i=$((i+1)); echo out-$i; echo err-$i >&2; done; "
              "usleep 300000; echo done; exec sleep 1000")
    service = params(bundle=make_bundle(["sh", "-c", script]), log_max_size=4096, log_max_files=3)
    path = container_state.run(service)["container"]["log_path"]
    checked = []

    def a_consistent_read_that_saw_the_end():
        entries, dummy = module_logs.container_logs(state_root, service["id"], tail=100)
        numbers = {"stdout": [], "stderr": []}
        for entry in entries:
            if entry["text"] == "done" or (entry["stream"] == "stderr" and ROTATION_NOTICE.match(entry["text"])):
                continue
            match = re.match(r"^(out|err)-(\d+)$", entry["text"])
            assert match, entry
            assert entry["stream"] == {"out": "stdout", "err": "stderr"}[match.group(1)], entry
            numbers[entry["stream"]].append(int(match.group(2)))
        for stream, seen in numbers.items():
            assert seen == sorted(set(seen)) and (not seen or seen[-1] - seen[0] == len(seen) - 1), (stream, seen)
        checked.append(len(entries))
        return entries and entries[-1]["text"] == "done"
    poll(a_consistent_read_that_saw_the_end, "the service's last line, 'done'", delay=0.01)
    assert os.path.exists(path + ".1") and os.path.exists(path + ".2"), "the log never rotated"
    assert len(checked) > 1 and max(checked) == 100, checked


# --------------------------------------------------------------------------
# the runtime's reader, which `ocirt logs` shares: a record still being written, a file rotated away


def test_the_reader_leaves_a_record_still_being_written(tmp_path):
    path = str(tmp_path / "container.log")
    with open(path, "wb") as handle:
        handle.write(b"2026-01-02T03:04:05.000000001Z stdout F whole\n2026-01-02T03:04:05.000000002Z stdout F hal")
    records, offset = runtime_logs.read_records_and_offset(path)
    assert [r.text for r in records] == [b"whole"]
    assert offset == len(b"2026-01-02T03:04:05.000000001Z stdout F whole\n")


def test_the_reader_opens_again_when_the_log_rotates_during_its_opens(tmp_path, monkeypatch):
    path = str(tmp_path / "container.log")
    with open(path + ".1", "wb") as handle:
        handle.write(b"2026-01-02T03:04:05.000000001Z stdout F one\n")
    with open(path, "wb") as handle:
        handle.write(b"2026-01-02T03:04:05.000000002Z stdout F two\n")
    original = runtime_logs._open_newest_first
    calls = []

    def rotate_after_opening_the_live_file(*args):
        handles = original(*args)
        if not calls:
            # What the monitor does: log.1 -> log.2, log -> log.1, a new log.
            os.rename(path + ".1", path + ".2")
            os.rename(path, path + ".1")
            with open(path, "wb") as handle:
                handle.write(b"2026-01-02T03:04:05.000000003Z stdout F three\n")
        calls.append([name for name, dummy in handles])
        return handles
    monkeypatch.setattr(runtime_logs, "_open_newest_first", rotate_after_opening_the_live_file)
    records = runtime_logs.read_records(path, 3)
    assert calls == [[path, path + ".1"], [path, path + ".1", path + ".2"]]
    assert [r.text for r in records] == [b"one", b"two", b"three"]


def test_a_file_rotated_to_the_next_name_between_two_opens_is_read_once(tmp_path, monkeypatch):
    path = str(tmp_path / "container.log")
    with open(path + ".1", "wb") as handle:
        handle.write(b"2026-01-02T03:04:05.000000001Z stdout F one\n")
    with open(path, "wb") as handle:
        handle.write(b"2026-01-02T03:04:05.000000002Z stdout F two\n")
    real_open = open
    opened = []

    def open_and_rotate_after_the_live_file(name, mode="r", *args):
        handle = real_open(name, mode, *args)
        if name == path and not opened:
            os.rename(path + ".1", path + ".2")
            os.rename(path, path + ".1")  # the file just opened is log.1 now, and no new log yet
        opened.append(name)
        return handle
    monkeypatch.setattr(runtime_logs, "open", open_and_rotate_after_the_live_file, raising=False)
    records = runtime_logs.read_records(path, 3)
    assert [r.text for r in records] == [b"one", b"two"]
