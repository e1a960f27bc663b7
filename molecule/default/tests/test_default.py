"""site.yml on one box: the operator's checks, check mode, status and isolation."""
import os
import pathlib
import re
import subprocess
import time

import pytest
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
VARS = yaml.safe_load((SCENARIO / "inventory" / "group_vars" / "all" / "main.yml").read_text())


def playbook(name, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT / ".collections"), ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(PROJECT / "playbooks" / name), *args],
        env=env, capture_output=True, text=True, check=False, timeout=1200)


def recap(output):
    match = re.search(r"stack\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def test_check_mode_on_the_converged_box_changes_nothing():
    result = playbook("site.yml", "--check", "--diff")
    assert result.returncode == 0, result.stdout[-4000:]
    counts = recap(result.stdout)
    assert counts["failed"] == 0 and counts["changed"] == 0, result.stdout[-4000:]


def test_operator_smoke_test_passes():
    result = playbook("verify.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert VARS["livekit_api_secret"] not in result.stdout
    assert VARS["postgresql_db_password"] not in result.stdout


@pytest.mark.parametrize("unit", ["postgresql.service", "letta.service", "livekit-server.service"])
def test_units_active_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert host.run(f"systemctl is-active {unit}").stdout.strip() == "active"


def test_services_run_as_their_own_users(host):
    for unit, user in (("letta.service", "letta"), ("livekit-server.service", "livekit")):
        assert host.run(f"systemctl show -p User --value {unit}").stdout.strip() == user


def test_venvs_are_isolated(host):
    agents = host.run("/opt/livekit-agents/venv/bin/python -c 'import importlib.metadata as m; "
                      "print(\"\\n\".join(sorted(d.metadata[\"Name\"].lower() for d in m.distributions())))'")
    letta = host.run("/opt/letta/venv/bin/python -c 'import importlib.metadata as m; "
                     "print(\"\\n\".join(sorted(d.metadata[\"Name\"].lower() for d in m.distributions())))'")
    assert agents.rc == 0 and letta.rc == 0
    agent_packages, letta_packages = set(agents.stdout.split()), set(letta.stdout.split())
    assert "letta" in letta_packages and "livekit-agents" in agent_packages
    assert not {p for p in letta_packages if p.startswith("livekit")}
    assert not {p for p in agent_packages if p.startswith("letta")}


def test_status_starts_what_is_down_and_reports_healthy(host):
    host.run_expect([0], "systemctl stop letta.service livekit-server.service")
    assert host.run("systemctl is-active letta.service").stdout.strip() != "active"
    result = playbook("status.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "letta.service: was stopped, started" in result.stdout
    assert "livekit-server.service: was stopped, started" in result.stdout
    assert "All healthy" in result.stdout
    for unit in ("letta.service", "livekit-server.service"):
        assert host.run(f"systemctl is-active {unit}").stdout.strip() == "active"


def test_status_fails_naming_what_stays_down(host):
    # A unit that cannot start (a runtime drop-in makes its start fail): the
    # playbook must fail and name it.
    dropin = "/run/systemd/system/livekit-server.service.d"
    host.run_expect([0], f"mkdir -p {dropin} && printf '[Service]\\nExecStartPre=/bin/false\\n' > {dropin}/broken.conf"
                         " && systemctl daemon-reload && systemctl stop livekit-server.service")
    try:
        result = playbook("status.yml", "-e", "status_wait_timeout=5")
        assert result.returncode != 0
        assert "Still unhealthy" in result.stdout and "livekit-server.service" in result.stdout
    finally:
        host.run_expect([0], f"rm -rf {dropin} && systemctl daemon-reload && systemctl start livekit-server.service")
    deadline = time.monotonic() + 60
    while host.run("curl -fsS http://127.0.0.1:37880/ || python3 -c \"import urllib.request;"
                   "urllib.request.urlopen('http://127.0.0.1:37880/')\"").rc != 0:
        assert time.monotonic() < deadline, "livekit-server did not come back"
        time.sleep(1)
