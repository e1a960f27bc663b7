# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""write_files run by ansible-playbook against this machine, the way the roles use it."""

import json
import os
import stat
import subprocess

import pytest
import yaml

from conftest import COLLECTIONS, ROOT

SECRET = "s3cret-value-never-shown"


def run(tmp_path, files, *args, task_extra=None, directories=None):
    """One write_files task; its registered result, and the whole output."""
    arguments = {"files": files} if directories is None else {"directories": directories, "files": files}
    task = {"name": "Write", "hybridstack.letta_livekit.write_files": arguments, "register": "result",
            "ignore_errors": True}
    task.update(task_extra or {})
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [task, {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(tmp_path / "result.json")},
                         "check_mode": False, "no_log": True}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
               ANSIBLE_NOCOLOR="1")
    done = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook), *args],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "result.json").read_text()), done.stdout + done.stderr


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def target(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    return folder


def test_writes_each_file_then_finds_them_as_asked(tmp_path, target):
    files = [{"path": str(target / "a.conf"), "content": "port = 1\n"},
             {"path": str(target / "b.env"), "content": f"KEY={SECRET}\n", "mode": "0640", "group": "nogroup"}]
    first, _output = run(tmp_path, files)
    assert first["changed"] is True and first["changed_paths"] == [f["path"] for f in files]
    assert (target / "a.conf").read_text() == "port = 1\n" and mode_of(target / "a.conf") == 0o644
    assert mode_of(target / "b.env") == 0o640 and (target / "b.env").stat().st_gid != 0
    # No temporary file is left beside them.
    assert sorted(p.name for p in target.iterdir()) == ["a.conf", "b.env"]

    again, _output = run(tmp_path, files)
    assert again["changed"] is False and again["changed_paths"] == []


def test_only_the_differing_file_changes_and_attributes_alone_are_mended(tmp_path, target):
    files = [{"path": str(target / "a.conf"), "content": "one\n"}, {"path": str(target / "b.conf"), "content": "two\n"}]
    run(tmp_path, files)
    (target / "a.conf").chmod(0o600)
    inode = (target / "a.conf").stat().st_ino
    files[1]["content"] = "two, changed\n"
    result, output = run(tmp_path, files, "--diff")
    assert result["changed_paths"] == [files[0]["path"], files[1]["path"]]
    # a.conf kept its content and its inode: only its mode was set.
    assert mode_of(target / "a.conf") == 0o644 and (target / "a.conf").stat().st_ino == inode
    assert (target / "b.conf").read_text() == "two, changed\n"
    assert "+two, changed" in output and "-two" in output


def test_check_mode_reports_and_writes_nothing(tmp_path, target):
    # The directory and the owner of the second file would come from earlier tasks of a real run.
    files = [{"path": str(target / "new.conf"), "content": "x\n"},
             {"path": str(target / "later" / "a.conf"), "content": "y\n", "owner": "not-created-yet"}]
    result, _output = run(tmp_path, files, "--check")
    assert result["changed"] is True and result["changed_paths"] == [f["path"] for f in files]
    assert sorted(p.name for p in target.iterdir()) == []


def test_a_no_log_task_shows_no_content_at_any_verbosity(tmp_path, target):
    files = [{"path": str(target / "key"), "content": f"{SECRET}\n", "mode": "0600"}]
    _result, output = run(tmp_path, files, "-vvvv", "--diff", task_extra={"no_log": True})
    assert SECRET not in output
    (target / "key").write_text("old-content\n")
    _result, output = run(tmp_path, files, "-vvvv", "--diff", task_extra={"no_log": True})
    assert SECRET not in output and "old-content" not in output
    assert (target / "key").read_text() == f"{SECRET}\n" and mode_of(target / "key") == 0o600


def test_a_missing_owner_or_directory_a_bad_mode_or_a_directory_in_the_way_is_named(tmp_path, target):
    result, _output = run(tmp_path, [{"path": str(target / "a"), "content": "", "owner": "no-such-user-here"}])
    assert result["failed"] is True and "no user named no-such-user-here" in result["msg"]
    result, _output = run(tmp_path, [{"path": str(target / "missing" / "a"), "content": ""}])
    assert result["failed"] is True and "its directory does not exist" in result["msg"]
    result, _output = run(tmp_path, [{"path": str(target / "a"), "content": "", "mode": "rw-r--r--"}])
    assert result["failed"] is True and "is not an octal number" in result["msg"]
    (target / "taken").mkdir()
    result, _output = run(tmp_path, [{"path": str(target / "taken"), "content": ""}])
    assert result["failed"] is True and "a directory is in the way" in result["msg"]


def test_directories_come_first_then_are_found_as_asked(tmp_path, target):
    directories = [{"path": str(target / "app"), "mode": "0750", "group": "nogroup"},
                   {"path": str(target / "app" / "conf.d")}]
    files = [{"path": str(target / "app" / "conf.d" / "a.conf"), "content": "x\n", "mode": "0640"}]
    checked, _output = run(tmp_path, files, "--check", directories=directories)
    assert checked["changed_paths"] == [directories[0]["path"], directories[1]["path"], files[0]["path"]]
    assert not (target / "app").exists()

    made, _output = run(tmp_path, files, directories=directories)
    assert made["changed_paths"] == checked["changed_paths"]
    assert mode_of(target / "app") == 0o750 and (target / "app").stat().st_gid != 0
    assert mode_of(target / "app" / "conf.d") == 0o755
    assert (target / "app" / "conf.d" / "a.conf").read_text() == "x\n"

    again, _output = run(tmp_path, files, directories=directories)
    assert again["changed"] is False
    (target / "app").chmod(0o755)
    mended, _output = run(tmp_path, files, directories=directories)
    assert mended["changed_paths"] == [directories[0]["path"]] and mode_of(target / "app") == 0o750


def test_missing_parents_are_made_alike_and_a_file_in_the_way_is_named(tmp_path, target):
    deep = target / "opt" / "app" / "1.0"
    made, _output = run(tmp_path, [], directories=[{"path": str(deep), "mode": "0750", "group": "nogroup"}])
    assert made["changed_paths"] == [str(deep)]
    for directory in (target / "opt", target / "opt" / "app", deep):
        assert mode_of(directory) == 0o750 and directory.stat().st_gid == deep.stat().st_gid != 0
    (target / "taken").write_text("")
    for directory in (target / "taken", target / "taken" / "below"):
        result, _output = run(tmp_path, [], directories=[{"path": str(directory)}])
        assert result["failed"] is True and result["msg"] == f"{target / 'taken'}: a file is in the way of the directory"


# The checkers below print what they saw of the checked file, so a test can tell it was the new content, with the
# final mode, at a temporary path beside the target.
REFUSE = "/bin/sh -c 'echo \"line 1 of $0: unknown directive\" >&2; exit 1' %s"
ACCEPT = "/bin/sh -c 'test \"$(stat -c %%a \"$0\")\" = 640 && grep -q \"^port = 2$\" \"$0\" && echo \"$0\" >>\"$1\"' %s {log}"


def test_a_failing_validate_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, target):
    (target / "a.conf").write_text("port = 1\n")
    files = [{"path": str(target / "a.conf"), "content": "port = 2\n", "mode": "0640", "validate": REFUSE}]
    result, _output = run(tmp_path, files)
    assert result["failed"] is True
    assert result["msg"].startswith(f"{target / 'a.conf'}: the new content failed validation")
    assert "unknown directive" in result["msg"]
    assert (target / "a.conf").read_text() == "port = 1\n"
    assert sorted(p.name for p in target.iterdir()) == ["a.conf"]


def test_a_passing_validate_sees_the_new_content_with_its_mode_then_the_file_is_written(tmp_path, target):
    log = tmp_path / "checked.log"
    files = [{"path": str(target / "a.conf"), "content": "port = 2\n", "mode": "0640",
              "validate": ACCEPT.format(log=log)}]
    result, _output = run(tmp_path, files)
    assert result["changed_paths"] == [files[0]["path"]]
    assert (target / "a.conf").read_text() == "port = 2\n" and mode_of(target / "a.conf") == 0o640
    checked = log.read_text().splitlines()
    assert len(checked) == 1 and checked[0].startswith(str(target / ".a.conf."))
    assert sorted(p.name for p in target.iterdir()) == ["a.conf"]


def test_validate_runs_only_on_new_content_and_never_in_check_mode(tmp_path, target):
    (target / "a.conf").write_text("port = 1\n")
    (target / "a.conf").chmod(0o600)
    # Same content, other mode: only the mode is mended, the refusing checker is not asked.
    result, _output = run(tmp_path, [{"path": str(target / "a.conf"), "content": "port = 1\n", "validate": REFUSE}])
    assert result["changed_paths"] == [str(target / "a.conf")] and mode_of(target / "a.conf") == 0o644
    result, _output = run(tmp_path, [{"path": str(target / "a.conf"), "content": "port = 2\n", "validate": REFUSE}],
                          "--check")
    assert not result.get("failed") and result["changed_paths"] == [str(target / "a.conf")]
    assert (target / "a.conf").read_text() == "port = 1\n"


@pytest.mark.parametrize("validate", ["/bin/true", "/bin/sh -c 'exit 0' %d", "/bin/true '%s"])
def test_a_validate_without_a_place_for_the_file_is_refused_before_anything_is_written(tmp_path, target, validate):
    files = [{"path": str(target / "first.conf"), "content": "x\n"},
             {"path": str(target / "a.conf"), "content": "port = 2\n", "validate": validate}]
    result, _output = run(tmp_path, files)
    assert result["failed"] is True and result["msg"].startswith(f"{target / 'a.conf'}: validate ")
    assert "must name the checked file as %s" in result["msg"]
    assert sorted(p.name for p in target.iterdir()) == []
