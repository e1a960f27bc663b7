"""The runbook's incident, reproduced on a fresh box and fixed for good.

converge.yml leaves Letta unpatched and started without LETTA_PG_URI while the
role letta/password letta exists, so the server reaches PostgreSQL through its
SQLite code path. The tests run in file order and each one moves the box one
step further: prove the 500, patch with playbooks/patch.yml, reinstall Letta
(pip/uv put the unpatched file back), re-run the playbook, run it once more
(changed=0), undo it, patch while the service is stopped, and let the letta
role's own include re-apply it. Clients run here on the runner, against the
box's loopback ports.
"""

import base64

import pytest
from stacktest import (SCENARIO, UV, UV_ENV, VARS, Letta, LettaDatabase, journal_cursor, project_playbook, run_playbook,
                       unit_starts_since)

LETTA = Letta(VARS["scenario_letta_port"])
DATABASE = LettaDatabase(VARS["scenario_postgresql_port"], VARS["scenario_db_password"])
VERSION = VARS["scenario_letta_version"]
VENV = "/opt/letta/current/venv"
UNIT = "letta.service"


def sequence_table():
    return DATABASE.query("SELECT to_regclass('message_sequence')")[0][0]


def unit(host):
    shown = host.check_output("systemctl show %s -p InvocationID -p NRestarts -p MainPID -p ActiveState "
                              "-p ExecMainStartTimestampMonotonic" % UNIT)
    return dict(line.split("=", 1) for line in shown.splitlines())


def starts_since(host, cursor):
    return unit_starts_since(host, UNIT, cursor)


def message_py(host):
    package = host.check_output(
        "%s/bin/python -I -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec(\"letta\").origin))'"
        % VENV)
    return package + "/orm/message.py"


def record_sha256(host):
    """sha256 of message.py as the installer recorded it in the dist-info RECORD."""
    record = host.check_output("cat %s/lib/python3*/site-packages/letta-%s.dist-info/RECORD"
                               % (VENV, VERSION))
    for line in record.splitlines():
        path, digest = line.rsplit(",", 2)[:2]
        if path == "letta/orm/message.py":
            algorithm, value = digest.split("=", 1)
            assert algorithm == "sha256", digest
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    raise AssertionError("letta/orm/message.py is not in the RECORD")


def file_sha256(host, path):
    return host.check_output("sha256sum %s" % path).split()[0]


def successful_run(playbook, *args, extra_vars=()):
    """A playbook run that must succeed; its recap with the output beside it."""
    run = run_playbook(playbook, *args, extra_vars=extra_vars)
    assert run.rc == 0, run.tail(6000)
    return dict(run.recap, stdout=run.stdout)


def run_patch_playbook(*args, extra_vars=()):
    """playbooks/patch.yml, the operator's re-run after upgrades."""
    return successful_run(project_playbook("patch.yml"), *args, extra_vars=extra_vars)


def reinstall_letta(host):
    """What an upgrade or venv rebuild does to message.py: the release's bytes come back."""
    result = host.run(
        "%s UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never %s pip install --python %s/bin/python --no-deps "
        "--reinstall-package letta letta==%s" % (UV_ENV, UV, VENV, VERSION))
    assert result.rc == 0, result.stderr
    assert "letta==%s" % VERSION in result.stderr


def patched(text):
    return text.count("ON CONFLICT (id) DO NOTHING") == 2 and "INSERT OR IGNORE" not in text


def unpatched(text):
    return text.count("INSERT OR IGNORE INTO message_sequence") == 2 and "ON CONFLICT" not in text


@pytest.fixture(scope="module")
def state():
    """What one step leaves for the next."""
    return {}


def test_01_server_runs_unpatched_without_letta_pg_uri(host, state):
    assert LETTA.wait_healthy()["version"] == VERSION
    main_pid = unit(host)["MainPID"]
    environ = host.check_output("tr '\\0' '\\n' < /proc/%s/environ | cut -d= -f1" % main_pid).split()
    assert "LETTA_PG_URI" not in environ
    # The URI is configured; only the process does not get it.
    assert host.file("/etc/letta/letta.env").contains("^LETTA_PG_URI=")
    state["path"] = message_py(host)
    assert unpatched(host.file(state["path"]).content_string)
    assert file_sha256(host, state["path"]) == record_sha256(host)


def test_02_agent_creation_fails_with_500_as_in_the_runbook(host):
    cursor = journal_cursor(host)
    status, body = LETTA.create_agent("runbook-incident")
    assert status == 500, body
    log = host.check_output("journalctl -q -u %s --after-cursor='%s' --no-pager -o cat" % (UNIT, cursor))
    assert 'syntax error at or near "OR"' in log
    assert "INSERT OR IGNORE INTO message_sequence" in log
    # The SQLite-only statement rolled back with the table it created.
    assert sequence_table() is None


def patch_and_expect_one_restart(host, state, agent_name):
    """Run patch.yml: the file is patched, Letta restarted once, agents work."""
    before, cursor = unit(host), journal_cursor(host)
    recap = run_patch_playbook()
    # The module and the one restart.
    assert recap["changed"] == 2, recap["stdout"][-3000:]
    assert patched(host.file(state["path"]).content_string)
    after = unit(host)
    assert after["InvocationID"] != before["InvocationID"]
    assert starts_since(host, cursor) == 1
    LETTA.wait_healthy()
    status, body = LETTA.create_agent(agent_name)
    assert status == 200, body
    assert body["name"] == agent_name
    return before, after


def test_03_patch_playbook_fixes_it(host, state):
    patch_and_expect_one_restart(host, state, "after-patch")
    assert sequence_table() == "message_sequence"


def test_04_reinstalling_letta_brings_the_unpatched_file_back(host, state):
    before = unit(host)
    reinstall_letta(host)
    assert unpatched(host.file(state["path"]).content_string)
    assert file_sha256(host, state["path"]) == record_sha256(host)
    # Nothing restarted the server: it still runs the patched code it loaded.
    assert unit(host)["InvocationID"] == before["InvocationID"]


def test_04b_check_mode_reports_the_patch_and_writes_nothing(host, state):
    before, cursor = unit(host), journal_cursor(host)
    recap = run_patch_playbook("--check", "--diff")
    # The module and the restart it would trigger.
    assert recap["changed"] == 2, recap["stdout"][-3000:]
    assert "+" + " " * 16 + "ON CONFLICT (id) DO NOTHING" in recap["stdout"]
    assert "-" + " " * 16 + "INSERT OR IGNORE INTO message_sequence (id, next_val)" in recap["stdout"]
    assert file_sha256(host, state["path"]) == record_sha256(host)
    assert unit(host)["InvocationID"] == before["InvocationID"]
    assert starts_since(host, cursor) == 0


def test_05_patch_playbook_repatches_and_restarts_once(host, state):
    before, after = patch_and_expect_one_restart(host, state, "after-reinstall")
    assert after["ExecMainStartTimestampMonotonic"] != before["ExecMainStartTimestampMonotonic"]
    # A crash loop would count here; the one deliberate restart does not.
    assert after["NRestarts"] == before["NRestarts"]
    state["invocation"] = after["InvocationID"]


def test_06_second_run_changes_nothing(host, state):
    cursor = journal_cursor(host)
    recap = run_patch_playbook()
    assert recap["changed"] == 0, recap["stdout"][-3000:]
    assert unit(host)["InvocationID"] == state["invocation"]
    assert starts_since(host, cursor) == 0


def test_07_check_mode_on_the_patched_box_changes_nothing(host, state):
    before = file_sha256(host, state["path"])
    recap = run_patch_playbook("--check", "--diff")
    assert recap["changed"] == 0, recap["stdout"][-3000:]
    assert file_sha256(host, state["path"]) == before
    assert unit(host)["InvocationID"] == state["invocation"]


def test_08_state_absent_restores_the_release_and_the_incident(host, state):
    cursor = journal_cursor(host)
    recap = run_patch_playbook(extra_vars=[{"letta_patch_state": "absent"}])
    assert recap["changed"] == 2, recap["stdout"][-3000:]
    assert file_sha256(host, state["path"]) == record_sha256(host)
    assert starts_since(host, cursor) == 1
    LETTA.wait_healthy()
    status, body = LETTA.create_agent("after-undo")
    assert status == 500, body


def test_09_a_stopped_service_is_patched_but_not_started(host, state):
    host.check_output("systemctl stop %s" % UNIT)
    cursor = journal_cursor(host)
    recap = run_patch_playbook()
    # The module only: the handler leaves a unit the operator stopped alone.
    assert recap["changed"] == 1, recap["stdout"][-3000:]
    assert patched(host.file(state["path"]).content_string)
    assert unit(host)["ActiveState"] == "inactive"
    assert starts_since(host, cursor) == 0
    host.check_output("systemctl start %s" % UNIT)
    LETTA.wait_healthy()
    status, body = LETTA.create_agent("after-stopped-patch")
    assert status == 200, body


def test_10_the_letta_role_reapplies_the_patch_through_its_include(host, state):
    """The letta role's own path: its include of letta_patch after the venv build."""
    reinstall_letta(host)
    assert unpatched(host.file(state["path"]).content_string)
    cursor = journal_cursor(host)
    converge = SCENARIO / "converge.yml"
    recap = successful_run(converge, extra_vars=[{"letta_apply_patch": True}])
    assert recap["changed"] >= 2, recap["stdout"][-3000:]
    assert patched(host.file(state["path"]).content_string)
    # letta_patch_restart_service is false there; the letta role restarts once.
    assert starts_since(host, cursor) == 1
    LETTA.wait_healthy()
    status, body = LETTA.create_agent("after-letta-role")
    assert status == 200, body
    cursor = journal_cursor(host)
    assert successful_run(converge, extra_vars=[{"letta_apply_patch": True}])["changed"] == 0
    assert starts_since(host, cursor) == 0
