"""python_venv on its own: uv pip sync semantics, changed only when something
was installed or removed, check mode, the pip fallback, separate venvs."""
import json
import os
import pathlib
import subprocess

import pytest

SCENARIO = pathlib.Path(__file__).resolve().parents[1]


def json_env():
    """Machine-readable output only: no extra callbacks writing to stdout."""
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CALLBACKS_ENABLED"}
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    return env


def probe(path, lock, installer="uv", check=False):
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "venv_probe.yml",
               "-e", json.dumps({"probe_venv_path": path, "probe_lock": lock, "probe_installer": installer})]
    if check:
        command.append("--check")
    result = subprocess.run(command, cwd=SCENARIO, capture_output=True, text=True, check=False, timeout=600,
                            env=json_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    shown = [res for play in report["plays"] for task in play["tasks"] if task["task"]["name"] == "Show the result"
             for res in task["hosts"].values()]
    return shown[0]["python_venv_result"], report["stats"]


def changed(stats):
    return sum(host["changed"] for host in stats.values())


@pytest.fixture(scope="module")
def uv_venv(host):
    host.run("rm -rf /opt/probe-uv /opt/probe-uv.lock.txt")
    yield "/opt/probe-uv"
    host.run("rm -rf /opt/probe-uv /opt/probe-uv.lock.txt")


def test_check_mode_on_a_new_venv_changes_nothing(host, uv_venv):
    result, _output = probe(uv_venv, "probe-two.txt", check=True)
    assert result["changed"] is True
    assert result["packages"] == {}
    assert not host.file(uv_venv).exists


def test_uv_builds_then_audits_then_removes(host, uv_venv):
    first, stats = probe(uv_venv, "probe-two.txt")
    assert first["changed"] is True and changed(stats) > 0
    assert first["path"] == uv_venv and first["python"] == uv_venv + "/bin/python"
    assert first["packages"]["idna"] == "3.10" and first["packages"]["six"] == "1.17.0"
    # Nothing from Letta's venv leaks in: the probe imports its own copy only.
    assert "letta" not in first["packages"] and "fastapi" not in first["packages"]
    located = host.run(f"{uv_venv}/bin/python -c 'import six; print(six.__file__)'")
    assert located.stdout.startswith(uv_venv + "/lib/"), located.stdout
    assert host.run(f"{uv_venv}/bin/python -c 'import fastapi'").rc != 0

    again, stats = probe(uv_venv, "probe-two.txt")
    assert again["changed"] is False and changed(stats) == 0

    smaller, stats = probe(uv_venv, "probe-one.txt")
    assert smaller["changed"] is True and changed(stats) > 0
    assert "six" not in smaller["packages"] and smaller["packages"]["idna"] == "3.10"
    assert host.run(f"{uv_venv}/bin/python -c 'import six'").rc != 0
    assert host.file(uv_venv + ".lock.txt").content_string.strip().endswith("idna==3.10")


def test_pip_fallback_installs_and_is_idempotent(host):
    host.run("rm -rf /opt/probe-pip /opt/probe-pip.lock.txt")
    try:
        first, stats = probe("/opt/probe-pip", "probe-two.txt", installer="pip")
        assert first["changed"] is True
        assert first["packages"]["six"] == "1.17.0"
        again, stats = probe("/opt/probe-pip", "probe-two.txt", installer="pip")
        assert again["changed"] is False and changed(stats) == 0
    finally:
        host.run("rm -rf /opt/probe-pip /opt/probe-pip.lock.txt")
