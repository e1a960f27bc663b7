"""host_probe, the one way roles read a host, run by ansible-playbook against this
machine; and the filters that compare its answer with what a role wants."""
import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys

import pytest
import yaml

from conftest import COLLECTIONS, ROOT

sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.hybridstack.letta_livekit.plugins.filter.files import (  # noqa: E402
    directories_to_make, files_to_write, json_object, paths_present)
from ansible_collections.hybridstack.letta_livekit.plugins.modules.host_probe import parse_units  # noqa: E402

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def probe(tmp_path, **arguments):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [{"hybridstack.letta_livekit.host_probe": arguments, "register": "result"},
                  {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(tmp_path / "out.json")},
                   "check_mode": False}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS))
    done = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "--check", str(playbook)],
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "out.json").read_text())


def test_paths_report_type_owner_mode_digest_and_link_target(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o750)
    folder.chmod(0o750)
    conf = folder / "a.conf"
    conf.write_text("port = 1\n")
    conf.chmod(0o640)
    (folder / "current").symlink_to("releases/1.0")
    found = probe(tmp_path, paths=[str(conf), str(folder), str(folder / "current"), str(folder / "missing")])
    paths = found["paths"]
    assert paths[str(conf)] == {"type": "file", "owner": ME, "group": MY_GROUP, "mode": "0640", "writable": True, "executable": False,
                                "sha256": hashlib.sha256(b"port = 1\n").hexdigest(), "target": None}
    assert paths[str(folder)]["type"] == "directory" and paths[str(folder)]["mode"] == "0750"
    assert paths[str(folder / "current")]["type"] == "link"
    assert paths[str(folder / "current")]["target"] == "releases/1.0"
    assert paths[str(folder / "missing")]["type"] == "absent"
    assert found["changed"] is False


def test_contents_packages_accounts_and_venvs(tmp_path):
    record = tmp_path / "record.txt"
    record.write_text("letta 1.0 on db:5432/letta\n")
    found = probe(tmp_path, contents=[str(record), str(tmp_path / "none")],
                  packages=["dpkg", "no-such-package-here"], accounts=True,
                  venvs=[str(ROOT / ".venv"), str(tmp_path / "no-venv")])
    assert found["contents"] == {str(record): "letta 1.0 on db:5432/letta\n", str(tmp_path / "none"): None}
    assert list(found["packages"]) == ["dpkg"] and found["packages"]["dpkg"]
    assert found["users"]["root"]["uid"] == 0 and found["groups"]["root"] == 0
    venv = found["venvs"][str(ROOT / ".venv")]
    assert venv["exists"] is True and "ansible-core" in venv["packages"] and venv["environment"]["os_name"] == "posix"
    assert found["venvs"][str(tmp_path / "no-venv")] == {"exists": False, "packages": {}, "environment": {}}


def test_units_are_read_as_is_enabled_and_is_active_say_it():
    shown = ("Id=letta.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n"
             "Id=gone.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n\n"
             "Id=x.timer\nLoadState=loaded\nActiveState=failed\nUnitFileState=static\n")
    assert parse_units(["letta.service", "gone.service", "x.timer"], shown) == {
        "letta.service": {"enabled": "enabled", "active": "active"},
        "gone.service": {"enabled": "", "active": ""},
        "x.timer": {"enabled": "static", "active": "failed"}}


def probed(path, **state):
    entry = {"type": "file", "owner": "root", "group": "root", "mode": "0644", "sha256": None, "target": None}
    entry.update(state)
    return {"paths": {path: entry}}


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_file_as_wanted_is_not_written_again():
    wanted = [{"path": "/etc/a", "content": "x\n", "owner": "root", "group": "root", "mode": "0644"}]
    assert files_to_write(wanted, probed("/etc/a", sha256=digest("x\n"))) == []


@pytest.mark.parametrize("state", [{"sha256": digest("old\n")}, {"mode": "0600"}, {"owner": "letta"},
                                   {"group": "letta"}, {"type": "link"}, {"type": "absent"}])
def test_a_file_that_differs_in_anything_is_written(state):
    wanted = [{"path": "/etc/a", "content": "x\n", "mode": "644", "validate": "true %s"}]
    found = probed("/etc/a", sha256=digest("x\n"))
    found["paths"]["/etc/a"].update(state)
    assert files_to_write(wanted, found) == wanted


def test_content_may_come_from_a_map_rendered_once_and_extra_keys_are_dropped():
    wanted = [{"path": "/etc/a", "src": "a.j2", "kind": "full", "mode": "0640"},
              {"path": "/etc/b", "content": " raw ", "mode": "0600"}]
    assert files_to_write(wanted, {"paths": {}}, {"/etc/a": "y\n", "/etc/b": "raw\n"}) == [
        {"path": "/etc/a", "mode": "0640", "content": "y\n"}, {"path": "/etc/b", "mode": "0600", "content": "raw\n"}]


def test_directories_and_present_paths():
    found = {"paths": {"/d": {"type": "directory", "owner": "root", "group": "root", "mode": "0755"},
                       "/e": {"type": "file", "owner": "root", "group": "root", "mode": "0755"},
                       "/gone": {"type": "absent"}}}
    assert directories_to_make([{"path": "/d"}, {"path": "/e"}, {"path": "/new", "mode": "0750"}], found) == [
        {"path": "/e"}, {"path": "/new", "mode": "0750"}]
    assert paths_present(["/d", "/gone", "/never"], found) == ["/d"]


def test_a_server_certificate_read_from_a_host_is_current_only_when_it_should_stay(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "playbooks"))
    from sitecheck import make_certificate
    from ansible_collections.hybridstack.letta_livekit.plugins.filter.tls import certificate_current

    ca_path, _key, ca_key, ca = make_certificate(tmp_path, "ca", [], days=3650)
    cert_path, _key, _k, _c = make_certificate(tmp_path, "db", ["db.stack.test"], days=90, issuer=(ca, ca_key))
    other_ca_path, _key, _k, _c = make_certificate(tmp_path, "other", [], days=3650)
    cert, ca_pem, other_ca = cert_path.read_text(), ca_path.read_text(), other_ca_path.read_text()
    assert certificate_current(cert, ca_pem, ["db.stack.test"], 30 * 86400) is True
    assert certificate_current(cert, ca_pem, ["db.stack.test", "db2.stack.test"], 30 * 86400) is False
    assert certificate_current(cert, ca_pem, ["db.stack.test"], 100 * 86400) is False
    assert certificate_current(cert, other_ca, ["db.stack.test"], 30 * 86400) is False
    assert certificate_current(None, ca_pem, ["db.stack.test"], 30 * 86400) is False


@pytest.mark.parametrize("text, expected", [
    ('{"lock": "abc", "packages": {"six": "1.17.0"}}', {"lock": "abc", "packages": {"six": "1.17.0"}}),
    ('["not", "an", "object"]', None), ("{truncated", None), (None, None), ("", None)])
def test_a_record_is_read_only_when_it_is_a_json_object(text, expected):
    assert json_object(text) == expected
