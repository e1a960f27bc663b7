# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_probe's venvs and paths run the way Ansible runs it: a separate
interpreter with its arguments in a file, against real venvs and files in a
temp dir (python_venv's whole view of a host)."""

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

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "host_probe.py"


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
    result = probe(venvs=[str(venv)], paths=[sys.executable])
    assert result["changed"] is False
    assert result["paths"][sys.executable]["executable"] is True
    found = result["venvs"][str(venv)]
    assert found["exists"] is True
    assert found["packages"]["foo-bar-baz"] == "1.2"
    assert found["packages"]["six"] == "1.17.0"


def test_packages_in_the_working_directory_do_not_leak_in(venv, tmp_path):
    elsewhere = tmp_path / "cwd"
    add_distribution(elsewhere, "leaked", "9.9")
    packages = probe(cwd=str(elsewhere), venvs=[str(venv)])["venvs"][str(venv)]["packages"]
    assert "leaked" not in packages and packages["six"] == "1.17.0"


def test_missing_venv_and_interpreter_are_reported_not_failed(tmp_path):
    result = probe(venvs=[str(tmp_path / "nothing")], paths=[str(tmp_path / "no-python")])
    assert result["venvs"][str(tmp_path / "nothing")] == {"exists": False, "packages": {}, "environment": {}}
    assert result["paths"][str(tmp_path / "no-python")]["executable"] is False


def test_interpreter_without_execute_permission_is_not_usable(tmp_path):
    plain = tmp_path / "python3"
    plain.write_text("")
    plain.chmod(0o644)
    assert probe(paths=[str(plain)])["paths"][str(plain)]["executable"] is False


def test_an_interpreter_behind_a_link_is_usable(tmp_path):
    link = tmp_path / "python3"
    link.symlink_to(sys.executable)
    found = probe(paths=[str(link)])["paths"][str(link)]
    assert found["type"] == "link" and found["executable"] is True


def test_the_tools_venv_names_the_uv_it_holds(tmp_path):
    tools = tmp_path / "tools"
    add_distribution(make_venv(tools), "uv", "0.9.5")
    assert probe(venvs=[str(tools)])["venvs"][str(tools)]["packages"]["uv"] == "0.9.5"
    bare = tmp_path / "bare"
    make_venv(bare)
    assert "uv" not in probe(venvs=[str(bare)])["venvs"][str(bare)]["packages"]


def test_paths_report_content_owner_and_mode(tmp_path):
    lock = tmp_path / "venv.lock.txt"
    lock.write_bytes(b"six==1.17.0\n")
    lock.chmod(0o640)
    missing = tmp_path / "missing.txt"
    result = probe(paths=[str(lock), str(tmp_path), str(missing)])
    owner, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    assert result["paths"][str(lock)] == {
        "type": "file", "sha256": hashlib.sha256(b"six==1.17.0\n").hexdigest(), "target": None,
        "owner": owner, "group": group, "mode": "0640", "writable": True, "executable": False}
    directory = result["paths"][str(tmp_path)]
    assert directory["type"] == "directory" and directory["sha256"] is None
    assert directory["mode"] == "%04o" % (tmp_path.stat().st_mode & 0o7777)
    assert result["paths"][str(missing)]["type"] == "absent" and result["paths"][str(missing)]["owner"] is None


def test_check_mode_gives_the_same_answers(venv, tmp_path):
    args = dict(venvs=[str(venv)], paths=[sys.executable, str(tmp_path)])
    assert probe(check_mode=True, **args) == probe(**args)


def test_venv_whose_interpreter_fails_is_a_failure(tmp_path):
    broken = tmp_path / "venv"
    executable(broken / "bin" / "python", "#!/bin/sh\necho 'base interpreter gone' >&2\nexit 3\n")
    result = probe(venvs=[str(broken)])
    assert result["failed"] is True
    assert "could not list its packages" in result["msg"] and "base interpreter gone" in result["msg"]


def test_environment_is_the_venv_interpreters(venv, tmp_path):
    environment = probe(venvs=[str(venv)])["venvs"][str(venv)]["environment"]
    assert environment["python"] == [platform.python_implementation(), platform.python_version()]
    assert environment["sys_platform"] == sys.platform
    assert environment["platform"][4] == platform.machine()


@pytest.mark.parametrize("content, expected", [
    ("letta 1.0 on db:5432/letta\n", "letta 1.0 on db:5432/letta\n"),
    (None, None),
])
def test_a_record_is_returned_as_text(tmp_path, content, expected):
    record = tmp_path / "record.json"
    if content is not None:
        record.write_text(content)
    assert probe(contents=[str(record)])["contents"][str(record)] == expected
