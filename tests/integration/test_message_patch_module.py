# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""main() of letta_message_patch through an exit_json/fail_json harness, on
real venvs holding the files of real Letta releases."""

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import sys

import pytest

from ansible_collections.hybridstack.letta_livekit.plugins.module_utils import letta_message_patch as lmp

from conftest import ModuleFail, SUPPORTED, install_release, make_venv, release_files


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(path):
    st = path.stat()
    return digest(path), st.st_mtime_ns, st.st_ino, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_present_patches_and_reports(letta_venv, run_module):
    venv, version, message = letta_venv
    original = message.read_text()
    result = run_module(venv=str(venv))
    assert result["changed"] is True
    assert result["path"] == os.path.realpath(message) or result["path"] == str(message)
    assert result["letta_version"] == version
    assert result["python"] == str(venv / "bin" / "python")
    assert (result["status_before"], result["status_after"], result["statements"]) == ("unpatched", "patched", 2)
    assert message.read_text() == lmp.apply_patch(original)
    assert "backup_file" not in result


def test_second_run_changes_nothing(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    run_module(venv=str(venv))
    before = snapshot(message)
    result = run_module(venv=str(venv))
    assert result["changed"] is False
    assert (result["status_before"], result["status_after"]) == ("patched", "patched")
    assert "already patched" in result["msg"]
    assert snapshot(message) == before


def test_absent_restores_the_original_sha256(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    original = digest(message)
    run_module(venv=str(venv))
    assert digest(message) != original
    result = run_module(venv=str(venv), state="absent")
    assert result["changed"] is True
    assert (result["status_before"], result["status_after"]) == ("patched", "unpatched")
    assert digest(message) == original
    assert run_module(venv=str(venv), state="absent")["changed"] is False


def test_check_mode_reports_the_change_and_writes_nothing(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    before = snapshot(message)
    leftovers = set(os.listdir(message.parent))
    result = run_module(venv=str(venv), check_mode=True, backup=True)
    assert result["changed"] is True
    assert result["status_after"] == "patched"
    assert "would be patched" in result["msg"]
    assert "backup_file" not in result
    assert snapshot(message) == before
    assert set(os.listdir(message.parent)) == leftovers


def test_diff_shows_before_and_after_with_headers(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    original = message.read_text()
    result = run_module(venv=str(venv), diff=True, check_mode=True)
    diff = result["diff"]
    assert diff["before"] == original
    assert diff["after"] == lmp.apply_patch(original)
    assert diff["before_header"] == "%s (unpatched)" % result["path"]
    assert diff["after_header"] == "%s (patched)" % result["path"]
    # No change, no diff.
    run_module(venv=str(venv))
    assert "diff" not in run_module(venv=str(venv), diff=True)


def test_owner_and_mode_are_kept_and_stale_bytecode_goes(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    os.chmod(message, 0o640)
    if os.geteuid() == 0:
        shutil.chown(message, "nobody", "nogroup")
    subprocess.run([str(venv / "bin" / "python"), "-m", "py_compile", str(message)], check=True)
    pycs = list((message.parent / "__pycache__").glob("message.*.pyc"))
    assert pycs
    owner = message.stat().st_uid, message.stat().st_gid
    result = run_module(venv=str(venv))
    st = message.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == owner
    assert sorted(result["removed_bytecode"]) == sorted(str(p) for p in pycs)
    assert not any(p.exists() for p in pycs)


def test_backup_keeps_the_previous_content(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    original = message.read_bytes()
    result = run_module(venv=str(venv), backup=True)
    backup = result["backup_file"]
    assert backup.startswith(str(message) + ".")
    with open(backup, "rb") as handle:
        assert handle.read() == original


def test_unknown_content_fails_and_leaves_the_file(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    message.write_text(message.read_text().replace("INSERT OR IGNORE", "INSERT OR REPLACE", 1))
    before = snapshot(message)
    for state in ("present", "absent"):
        with pytest.raises(ModuleFail) as failed:
            run_module(venv=str(venv), state=state)
        result = failed.value.result
        assert "neither the known unpatched nor the patched form" in result["msg"]
        assert "2 INSERT INTO message_sequence statement(s), but only 1 match" in result["msg"]
        assert result["status_before"] == "unknown"
        assert snapshot(message) == before


def test_nothing_to_patch_is_reported_not_failed(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    text = message.read_text()
    message.write_text(text[:text.index('@event.listens_for(Session, "before_flush")')])
    result = run_module(venv=str(venv))
    assert result["changed"] is False
    assert result["status_before"] == result["status_after"] == "nothing_to_patch"


@contextlib.contextmanager
def read_only(path):
    """Make the file unwritable for this process: immutable when we are root
    (root ignores modes), mode 0444 in a 0555 directory otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        modes = path.stat().st_mode, path.parent.stat().st_mode
        os.chmod(path, 0o444)
        os.chmod(path.parent, 0o555)
        try:
            yield
        finally:
            os.chmod(path.parent, modes[1])
            os.chmod(path, modes[0])


@pytest.mark.parametrize("check_mode", [False, True], ids=["apply", "check"])
def test_read_only_file_fails_unchanged(letta_venv, run_module, check_mode):
    venv, message = letta_venv.venv, letta_venv.message
    before = snapshot(message)
    with read_only(message):
        with pytest.raises(ModuleFail) as failed:
            run_module(venv=str(venv), backup=True, check_mode=check_mode)
        assert snapshot(message) == before
    result = failed.value.result
    assert "cannot rewrite %s" % message in result["msg"]
    assert "not writable" in result["msg"] and "the file is unchanged" in result["msg"]
    assert not list(message.parent.glob("message.py.*~"))


def test_read_only_file_already_patched_is_fine(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    run_module(venv=str(venv))
    with read_only(message):
        assert run_module(venv=str(venv))["changed"] is False


def test_content_that_does_not_compile_is_not_written(letta_venv, run_module):
    venv, message = letta_venv.venv, letta_venv.message
    message.write_text(message.read_text() + "\ndef broken(:\n")
    before = snapshot(message)
    with pytest.raises(ModuleFail) as failed:
        run_module(venv=str(venv))
    assert "does not compile with %s" % (venv / "bin" / "python") in failed.value.result["msg"]
    assert "SyntaxError" in failed.value.result["msg"]
    assert snapshot(message) == before


def test_missing_venv_fails(tmp_path, run_module):
    with pytest.raises(ModuleFail) as failed:
        run_module(venv=str(tmp_path / "nowhere"))
    assert failed.value.result["msg"] == "venv %s does not exist (or is not a directory)" % (tmp_path / "nowhere")


def test_directory_without_python_fails(tmp_path, run_module):
    with pytest.raises(ModuleFail) as failed:
        run_module(venv=str(tmp_path))
    assert "is not a virtual environment: it has no executable bin/python" in failed.value.result["msg"]


def test_plain_interpreter_is_not_taken_for_a_venv(tmp_path, run_module):
    (tmp_path / "bin").mkdir()
    os.symlink(getattr(sys, "_base_executable", sys.executable), tmp_path / "bin" / "python")
    with pytest.raises(ModuleFail) as failed:
        run_module(venv=str(tmp_path))
    assert "is not a virtual environment: its python reports prefix" in failed.value.result["msg"]


def test_venv_without_letta_fails(tmp_path, run_module):
    make_venv(tmp_path / "venv")
    with pytest.raises(ModuleFail) as failed:
        run_module(venv=str(tmp_path / "venv"))
    assert failed.value.result["msg"] == "no Letta in venv %s: its python cannot find the package 'letta'" % (
        tmp_path / "venv")


def test_unsupported_version_fails_before_reading(tmp_path, run_module):
    version = SUPPORTED[0]
    site = make_venv(tmp_path / "venv")
    # The files of a supported release, relabelled as a release nobody checked.
    files = {}
    for name, data in release_files(version).items():
        if name.startswith("letta-%s.dist-info/" % version):
            name = name.replace(version, "0.13.0")
            if name.endswith("/METADATA"):
                data = data.replace(("Version: %s" % version).encode(), b"Version: 0.13.0")
        files[name] = data
    message = install_release(site, version, files)
    before = snapshot(message)
    with pytest.raises(ModuleFail) as failed:
        run_module(venv=str(tmp_path / "venv"))
    result = failed.value.result
    assert result["letta_version"] == "0.13.0"
    assert "Letta 0.13.0 found in venv %s is not a supported version" % (tmp_path / "venv") in result["msg"]
    assert ", ".join(SUPPORTED) in result["msg"]
    assert "status_before" not in result
    assert snapshot(message) == before


def test_supported_versions_can_be_narrowed(letta_venv, run_module):
    venv, version, message = letta_venv
    others = [v for v in SUPPORTED if v != version]
    with pytest.raises(ModuleFail) as failed:
        run_module(venv=str(venv), supported_versions=others)
    assert "Letta %s found" % version in failed.value.result["msg"]
    assert run_module(venv=str(venv), supported_versions=[version])["changed"] is True


def test_supported_versions_default_to_the_checked_releases(letta_venv, run_module):
    import yaml
    from ansible_collections.hybridstack.letta_livekit.plugins.modules import letta_message_patch as module

    # One list, kept in module_utils: the documentation states no copy of it.
    assert "default" not in yaml.safe_load(module.DOCUMENTATION)["options"]["supported_versions"]
    venv, version, message = letta_venv
    assert version in SUPPORTED
    assert run_module(venv=str(venv), supported_versions=None)["changed"] is True
