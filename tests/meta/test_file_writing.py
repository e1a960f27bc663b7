"""Roles write file content one way: hybridstack.letta_livekit.write_files.

It checks the new content (validate) before an atomic rename, gives the file
its owner and mode before anyone can read it, and writes several files in one
round trip. A template, copy, lineinfile, blockinfile, replace, sysctl (its
sysctl_file) or touch task would bypass all of that, so each one left is
listed below with its reason.
"""
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TASK_FILES = sorted(path for pattern in ("roles/*/tasks/*.yml", "roles/*/handlers/*.yml") for path in ROOT.glob(pattern))
WRITERS = {"template", "copy", "lineinfile", "blockinfile", "replace", "sysctl"}

# (task file, task name): why write_files is wrong for it. Keep each reason
# true; an entry whose task is gone fails the second test below.
ALLOWED = {
    # A release archive of tens of megabytes from the controller: binary,
    # too large for a module argument.
    ("roles/livekit/tasks/release.yml", "Copy the offline archive"): "copy",
    # Writes its sysctl.d file and applies the values in one step.
    ("roles/livekit/tasks/sysctl.yml", "Set the kernel settings livekit-server asks for"): "sysctl",
    # Two directives of the host's nginx.conf, whoever wrote it: the package
    # (the balancer alone) or the edge, whose own file already reads so.
    ("roles/common/tasks/nginx_hardening.yml", "Move the package's nginx.conf pid file into the runtime directory"): "lineinfile",
    ("roles/common/tasks/nginx_hardening.yml", "Drop the package's nginx.conf user directive"): "lineinfile",
    # Appends one line to a history that grows with each upgrade; the rest
    # of the file is not the task's to rewrite.
    ("roles/letta/tasks/upgrade.yml", "Record which backup holds the database as the previous release left it"): "lineinfile",
}


def tasks_of(entries):
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        yield entry
        for section in ("block", "rescue", "always"):
            yield from tasks_of(entry.get(section))


def writer(task):
    """The short name of the file-content module a task calls, or None."""
    for key, arguments in task.items():
        if key in ("action", "local_action"):
            # The old spelling: the module is the first word, or the dict's module key.
            key = arguments.get("module", "") if isinstance(arguments, dict) else str(arguments).split(" ", 1)[0]
        name = key.rsplit(".", 1)[-1]
        if name in WRITERS:
            return name
        if name == "file" and isinstance(arguments, dict) and arguments.get("state") == "touch":
            return "file state=touch"
    return None


def found_writers():
    found = {}
    for path in TASK_FILES:
        for task in tasks_of(yaml.safe_load(path.read_text())):
            if (module := writer(task)) is not None:
                found[(str(path.relative_to(ROOT)), task.get("name", "<unnamed>"))] = module
    return found


def test_there_are_task_files_to_scan():
    assert len(TASK_FILES) > 20


@pytest.mark.parametrize("task", [
    {"ansible.builtin.template": {"src": "a.j2", "dest": "/etc/a"}},
    {"template": "src=a.j2 dest=/etc/a"},
    {"ansible.legacy.copy": {"content": "x", "dest": "/etc/a"}},
    {"community.general.blockinfile": {"path": "/etc/a", "block": "x"}},
    {"lineinfile": {"path": "/etc/a", "line": "x"}},
    {"ansible.builtin.file": {"path": "/etc/a", "state": "touch"}},
    {"action": "ansible.builtin.copy content=x dest=/etc/a"},
    {"local_action": {"module": "template", "src": "a.j2", "dest": "/tmp/a"}},
])
def test_the_scan_sees_each_way_of_writing(task):
    assert writer(task) is not None


@pytest.mark.parametrize("task", [
    {"hybridstack.letta_livekit.write_files": {"files": []}},
    {"ansible.builtin.file": {"path": "/etc/a", "state": "directory"}},
    {"ansible.builtin.slurp": {"src": "/etc/a"}},
])
def test_the_scan_lets_other_modules_be(task):
    assert writer(task) is None


def test_roles_write_files_only_through_write_files():
    unexpected = {task: module for task, module in found_writers().items() if ALLOWED.get(task) != module}
    assert not unexpected, ("use hybridstack.letta_livekit.write_files (with validate where the service has a checker), "
                            f"or add the task to ALLOWED with its reason: {unexpected}")


def test_every_allowed_exception_still_exists():
    stale = sorted(set(ALLOWED) - set(found_writers()))
    assert not stale, f"drop these from ALLOWED: {stale}"
