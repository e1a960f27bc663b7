# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python_venv_probe run the way Ansible runs it: a separate interpreter with
its arguments in a file, against real venvs and files in a temp dir."""

import grp
import hashlib
import json
import os
import platform
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import COLLECTIONS, make_venv

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "python_venv_probe.py"


def probe(check_mode=False, cwd=None, **args):
    """The module's JSON result; its exit status is 1 exactly when it reports failed."""
    args["_ansible_check_mode"] = check_mode
    # A file of its own: tests run side by side (pytest-xdist), often from one working directory.
    with tempfile.NamedTemporaryFile("w", prefix="probe-args-", suffix=".json") as args_file:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, args_file)
        args_file.flush()
        done = subprocess.run([sys.executable, str(MODULE), args_file.name], capture_output=True, text=True,
                              check=False, cwd=cwd, env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    result = json.loads(done.stdout)
    assert done.returncode == (1 if result.get("failed") else 0), done.stderr
    return result


def add_distribution(site, name, version):
    """What an installer leaves: a dist-info directory with its metadata."""
    info = site / ("%s-%s.dist-info" % (name, version))
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version))


def executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def venv(tmp_path):
    path = tmp_path / "venv"
    site = make_venv(path)
    add_distribution(site, "Foo_Bar.baz", "1.2")
    add_distribution(site, "six", "1.17.0")
    return path


def test_existing_venv_lists_its_packages_with_normalised_names(venv):
    result = probe(venv=str(venv), python=sys.executable)
    assert result["changed"] is False
    assert result["python_usable"] is True
    assert result["venv_exists"] is True
    assert result["packages"]["foo-bar-baz"] == "1.2"
    assert result["packages"]["six"] == "1.17.0"


def test_packages_in_the_working_directory_do_not_leak_in(venv, tmp_path):
    elsewhere = tmp_path / "cwd"
    add_distribution(elsewhere, "leaked", "9.9")
    result = probe(cwd=str(elsewhere), venv=str(venv))
    assert "leaked" not in result["packages"] and result["packages"]["six"] == "1.17.0"


def test_missing_venv_and_interpreter_are_reported_not_failed(tmp_path):
    result = probe(venv=str(tmp_path / "nothing"), python=str(tmp_path / "no-python"))
    assert result["venv_exists"] is False and result["packages"] == {}
    assert result["python_usable"] is False
    assert result["tools_venv_exists"] is False and result["uv_version"] is None
    assert result["paths"] == {}


def test_interpreter_without_execute_permission_is_not_usable(tmp_path):
    plain = tmp_path / "python3"
    plain.write_text("")
    plain.chmod(0o644)
    assert probe(venv=str(tmp_path / "venv"), python=str(plain))["python_usable"] is False


@pytest.mark.parametrize("output, status, expected", [
    ("uv 0.9.5\n", 0, "0.9.5"),
    ("uv 0.9.6 (4c0a5bd 2025-10-01)\n", 0, "0.9.6"),
    ("uv 0.9.5\n", 1, None),
    ("something else\n", 0, None),
])
def test_uv_version_of_the_tools_venv(tmp_path, output, status, expected):
    tools = tmp_path / "tools"
    executable(tools / "bin" / "python", "#!/bin/sh\n")
    executable(tools / "bin" / "uv", "#!/bin/sh\nprintf '%s'\nexit %d\n" % (output, status))
    result = probe(venv=str(tmp_path / "venv"), tools_venv=str(tools))
    assert result["tools_venv_exists"] is True
    assert result["uv_version"] == expected


def test_tools_venv_without_uv(tmp_path):
    tools = tmp_path / "tools"
    executable(tools / "bin" / "python", "#!/bin/sh\n")
    result = probe(venv=str(tmp_path / "venv"), tools_venv=str(tools))
    assert result["tools_venv_exists"] is True and result["uv_version"] is None


def test_paths_report_content_owner_and_mode(tmp_path):
    lock = tmp_path / "venv.lock.txt"
    lock.write_bytes(b"six==1.17.0\n")
    lock.chmod(0o640)
    missing = tmp_path / "missing.txt"
    result = probe(venv=str(tmp_path / "venv"), paths=[str(lock), str(tmp_path), str(missing)])
    owner, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    assert result["paths"][str(lock)] == {
        "exists": True, "isdir": False, "checksum": hashlib.sha1(b"six==1.17.0\n").hexdigest(),
        "owner": owner, "group": group, "mode": "0640"}
    directory = result["paths"][str(tmp_path)]
    assert directory["isdir"] is True and directory["checksum"] is None
    assert directory["mode"] == "%04o" % (tmp_path.stat().st_mode & 0o7777)
    assert result["paths"][str(missing)] == {
        "exists": False, "isdir": False, "checksum": None, "owner": None, "group": None, "mode": None}


def test_check_mode_gives_the_same_answers(venv, tmp_path):
    args = dict(venv=str(venv), python=sys.executable, paths=[str(tmp_path)])
    assert probe(check_mode=True, **args) == probe(**args)


def test_venv_whose_interpreter_fails_is_a_failure(tmp_path):
    broken = tmp_path / "venv"
    executable(broken / "bin" / "python", "#!/bin/sh\necho 'base interpreter gone' >&2\nexit 3\n")
    result = probe(venv=str(broken))
    assert result["failed"] is True
    assert "could not list its packages" in result["msg"] and "base interpreter gone" in result["msg"]


def test_environment_is_the_venv_interpreters(venv, tmp_path):
    environment = probe(venv=str(venv))["environment"]
    assert environment["python"] == [platform.python_implementation(), platform.python_version()]
    assert environment["sys_platform"] == sys.platform
    assert environment["platform"][4] == platform.machine()
    assert probe(venv=str(tmp_path / "nothing"))["environment"] == {}


@pytest.mark.parametrize("content, expected", [
    ('{"lock": "abc", "packages": {"six": "1.17.0"}}', {"lock": "abc", "packages": {"six": "1.17.0"}}),
    ('["not", "an", "object"]', None),
    ("{truncated", None),
    (None, None),
])
def test_record_is_returned_only_when_it_is_a_json_object(tmp_path, content, expected):
    record = tmp_path / "record.json"
    if content is not None:
        record.write_text(content)
    assert probe(venv=str(tmp_path / "venv"), record=str(record))["record"] == expected
