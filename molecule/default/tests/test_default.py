"""site.yml on one box: the operator's checks, check mode, status and isolation."""
import json

import pytest
from stacktest import VARS, project_playbook, run_playbook, unit_property, venv_distributions, wait_for


def operator_playbook(name, *args):
    """A shipped playbook run the way the operator runs it (the project's ansible.cfg)."""
    return run_playbook(project_playbook(name), *args, operator_config=True)


def test_check_mode_on_the_converged_box_changes_nothing():
    result = operator_playbook("site.yml", "--check", "--diff")
    assert result.rc == 0, result.tail()
    assert result.recap["failed"] == 0 and result.recap["changed"] == 0, result.tail()


def test_operator_smoke_test_passes():
    result = operator_playbook("verify.yml")
    assert result.rc == 0, result.tail()
    assert VARS["livekit_api_secret"] not in result.stdout
    assert VARS["postgresql_db_password"] not in result.stdout


@pytest.mark.parametrize("unit", ["postgresql.service", "letta.service", "livekit-server.service"])
def test_units_active_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert host.run(f"systemctl is-active {unit}").stdout.strip() == "active"


def test_services_run_as_their_own_users(host):
    for unit, user in (("letta.service", "letta"), ("livekit-server.service", "livekit")):
        assert unit_property(host, unit, "User") == user


def test_venvs_are_isolated(host):
    agent_packages = set(venv_distributions(host, "/opt/livekit-agents/venv"))
    letta_packages = set(venv_distributions(host, "/opt/letta/current/venv"))
    assert "letta" in letta_packages and "livekit-agents" in agent_packages
    assert not {p for p in letta_packages if p.startswith("livekit")}
    assert not {p for p in agent_packages if p.startswith("letta")}


def test_status_starts_what_is_down_and_reports_healthy(host):
    host.run_expect([0], "systemctl stop letta.service livekit-server.service")
    assert host.run("systemctl is-active letta.service").stdout.strip() != "active"
    result = operator_playbook("status.yml")
    assert result.rc == 0, result.tail()
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
        result = operator_playbook("status.yml", "-e", "status_wait_timeout=5")
        assert result.rc != 0
        assert "Still unhealthy" in result.stdout and "livekit-server.service" in result.stdout
    finally:
        host.run_expect([0], f"rm -rf {dropin} && systemctl daemon-reload && systemctl start livekit-server.service")
    # The box shares the runner's network: its loopback answers here.
    wait_for(f"http://127.0.0.1:{VARS['livekit_port']}/", seconds=60)


# What a run could change: files under /etc, /opt and /var/lib (but for the
# data the running services write by themselves) and the units' states.
FINGERPRINT = (
    "find /etc /opt /var/lib -xdev \\( -path /var/lib/postgresql -o -path /var/lib/systemd -o -path /var/lib/letta/.letta"
    " -o -path /var/lib/livekit-agent \\) -prune -o -printf '%p %s %m %U %G %T@\\n' | sort | sha256sum;"
    " systemctl list-units --all --no-legend --plain | sort | sha256sum"
)


@pytest.mark.parametrize("override", [
    {"letta_port": 80},
    {"postgresql_port": 80},
    {"postgresql_listen_addresses": ["db.example"]},
    {"letta_environment": {"LETTA_SERVER_SECURE": "false"}},
    {"letta_db_password": "Rotated+to/this="},
])
def test_bad_input_leaves_the_box_untouched(host, override):
    before = host.run(FINGERPRINT).stdout
    result = operator_playbook("site.yml", "-e", json.dumps(override))
    assert result.rc != 0, result.tail()
    assert next(iter(override)) in result.flat_output.split("fatal:", 1)[-1], result.tail()
    assert result.recap["changed"] == 0
    assert host.run(FINGERPRINT).stdout == before
