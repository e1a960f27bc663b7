"""pgBackRest on `stack`, asked the way an operator asks (the playbooks,
pgbackrest info, Letta's REST API); the host read only for units and modes.

The tests run in file order: each builds on the state the one before left
(backups taken, an agent deleted and brought back, then a restore onto the
fresh box). `fresh` is never converged before its restore.
"""
import json
import os
import time
import uuid

import pytest
import testinfra
import yaml
from stacktest import EPHEMERAL, SCENARIO, VARS, Letta, LettaDatabase, project_playbook, run_playbook, unit_property

testinfra_hosts = ["stack"]

HOST_VARS = {name: yaml.safe_load((SCENARIO / "inventory" / "host_vars" / f"{name}.yml").read_text())
             for name in ("stack", "fresh")}
STANZA = VARS["postgresql_backup_stanza"]
PASSWORD = VARS["postgresql_db_password"]
STACK_LETTA = Letta(HOST_VARS["stack"]["letta_port"])
FRESH_LETTA = Letta(HOST_VARS["fresh"]["letta_port"])
STACK_DB = LettaDatabase(HOST_VARS["stack"]["postgresql_port"], PASSWORD)
RESTORE_TARGET = ["-i", str(SCENARIO / "inventory" / "restore-target.yml")]
TIMERS = ["pgbackrest-backup-full.timer", "pgbackrest-backup-diff.timer"]


def fresh_host():
    return testinfra.get_host("ansible://fresh", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def info(host):
    result = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} --output=json info")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def labels(host):
    return [backup["label"] for backup in info(host)["backup"]]


def fingerprint(host):
    """What a refused run must leave alone: config, units, the cluster's start time."""
    files = host.run("sha1sum /etc/pgbackrest/pgbackrest.conf /etc/postgresql/17/main/conf.d/*.conf "
                     "/etc/systemd/system/pgbackrest-backup*").stdout
    started = STACK_DB.query("SELECT pg_postmaster_start_time()::text")[0][0]
    return files, started, unit_property(host, "letta.service", "ActiveEnterTimestamp")


def create_agent(letta, prefix):
    status, agent = letta.create_agent(f"{prefix}-{uuid.uuid4().hex[:8]}")
    assert status == 200, agent
    return agent


def test_check_mode_on_the_converged_box_changes_nothing():
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.rc == 0, run.tail()
    assert run.recap["failed"] == 0 and run.recap["changed"] == 0, run.tail()
    for key in ("server.key", "client.key"):
        secret_lines = [line for line in (EPHEMERAL / "tls" / key).read_text().splitlines() if "-----" not in line]
        assert not any(line in run.output for line in secret_lines), f"{key} in the output"


def test_status_and_verify_report_the_backups():
    verify = run_playbook(project_playbook("verify.yml"))
    assert verify.rc == 0, verify.tail()
    status = run_playbook(project_playbook("status.yml"))
    assert status.rc == 0, status.tail()
    assert f"pgbackrest stanza {STANZA}: check ok, timers active" in status.flat_output, status.tail()


def test_config_is_postgres_only(host):
    config = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (config.user, config.group, config.mode) == ("postgres", "postgres", 0o640)
    assert f"[{STANZA}]" in config.content_string
    assert "lock-path=/var/spool/pgbackrest/lock" in config.content_string


def test_archiving_is_on(host):
    assert STACK_DB.query("SELECT current_setting('archive_mode'), current_setting('archive_command')")[0] == \
        ("on", f"pgbackrest --stanza={STANZA} archive-push %p")


def test_timers_enabled_and_scheduled(host):
    for timer in TIMERS:
        assert host.service(timer).is_enabled, timer
        assert unit_property(host, timer, "ActiveState") == "active", timer
        assert unit_property(host, timer, "NextElapseUSecRealtime") not in ("", "0"), timer
        assert "Persistent=yes" in host.run(f"systemctl show -p Persistent {timer}").stdout or \
            "Persistent=true" in host.file(f"/etc/systemd/system/{timer}").content_string


def test_backup_service_is_hardened(host):
    unit = "pgbackrest-backup@full.service"
    assert unit_property(host, unit, "User") == "postgres"
    assert unit_property(host, unit, "ProtectSystem") == "strict"
    assert unit_property(host, unit, "NoNewPrivileges") == "yes"
    assert unit_property(host, unit, "PrivateTmp") == "yes"
    assert "/var/lib/pgbackrest" in unit_property(host, unit, "ReadWritePaths")


def test_pgbackrest_check_passes(host):
    result = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert result.rc == 0, result.stderr + result.stdout


def test_the_timers_service_takes_a_backup(host):
    before = labels(host)
    result = host.run("systemctl start pgbackrest-backup@full.service")
    assert result.rc == 0, host.run("journalctl -u pgbackrest-backup@full.service -n 30 --no-pager").stdout
    after = info(host)["backup"]
    assert len(after) > len(before) and after[-1]["type"] == "full", after


def test_backup_playbook_takes_a_new_backup(host):
    before = labels(host)
    run = run_playbook(project_playbook("backup.yml"), extra_vars=[{
        "postgresql_backup_type": "diff", "postgresql_backup_annotation": {"reason": "test"}}])
    assert run.rc == 0, run.tail()
    backups = info(host)["backup"]
    assert backups[-1]["label"] not in before
    assert backups[-1]["type"] == "diff"
    assert backups[-1].get("annotation") == {"reason": "test"}
    assert backups[-1]["label"] in run.output


def test_restore_over_the_running_database_is_refused(host):
    before = fingerprint(host)
    run = run_playbook(project_playbook("restore.yml"), "--limit", "stack")
    assert run.rc != 0, run.tail()
    assert "postgresql_backup_restore_force" in run.flat_output, run.tail()
    assert run.recap["changed"] == 0, run.tail()
    assert fingerprint(host) == before


def test_restore_without_a_backup_is_refused(host):
    before = fingerprint(host)
    run = run_playbook(project_playbook("restore.yml"), "--limit", "stack",
                       extra_vars=[{"postgresql_backup_stanza": "nothing-here", "postgresql_backup_restore_force": True}])
    assert run.rc != 0, run.tail()
    assert "postgresql_backup_stanza" in run.flat_output and "nothing-here" in run.flat_output, run.tail()
    assert run.recap["changed"] == 0, run.tail()
    assert fingerprint(host) == before


@pytest.mark.parametrize("overrides, names", [
    ({"postgresql_backup_full_schedule": "Sun *-*-* 25:00"}, ["postgresql_backup_full_schedule"]),
    ({"postgresql_backup_repo_type": "s3", "postgresql_backup_s3_bucket": "b", "postgresql_backup_s3_endpoint": "e",
      "postgresql_backup_s3_region": "r"}, ["postgresql_backup_s3_key", "postgresql_backup_s3_key_secret"]),
])
def test_bad_input_changes_nothing(host, overrides, names):
    before = fingerprint(host)
    run = run_playbook(project_playbook("site.yml"), extra_vars=[overrides])
    assert run.rc != 0, run.tail()
    for name in names:
        assert name in run.flat_output, run.tail()
    assert run.recap["changed"] == 0, run.tail()
    assert fingerprint(host) == before


def test_point_in_time_restore_brings_a_deleted_agent_back(host):
    kept = create_agent(STACK_LETTA, "kept")
    doomed = create_agent(STACK_LETTA, "doomed")
    before = STACK_LETTA.snapshot()
    time.sleep(2)
    target = STACK_DB.query("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'")[0][0]
    time.sleep(2)
    status, body = STACK_LETTA.delete_agent(doomed["id"])
    assert status == 200, body
    # The deletion's WAL segment must reach the repository: recovery stops at
    # the first commit after the target.
    assert host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check").rc == 0
    run = run_playbook(project_playbook("restore.yml"), "--limit", "stack", extra_vars=[{
        "postgresql_backup_restore_target": "time", "postgresql_backup_restore_time": target,
        "postgresql_backup_restore_force": True}])
    assert run.rc == 0, run.tail()
    STACK_LETTA.wait_healthy()
    after = STACK_LETTA.snapshot()
    assert doomed["id"] in after and kept["id"] in after
    assert after == before


def test_restore_onto_the_fresh_box_gives_back_the_same_agents(host):
    fresh = fresh_host()
    assert not fresh.package("postgresql-17").is_installed, "the fresh box was converged before its restore"
    create_agent(STACK_LETTA, "before-move")
    run = run_playbook(project_playbook("backup.yml"), "--limit", "stack")
    assert run.rc == 0, run.tail()
    expected = STACK_LETTA.snapshot()
    assert len(expected) >= 3
    run = run_playbook(project_playbook("restore.yml"), *RESTORE_TARGET, "--limit", "fresh")
    assert run.rc == 0, run.tail()
    FRESH_LETTA.wait_healthy()
    assert FRESH_LETTA.snapshot() == expected
    # The restored cluster archives through the repository host and passes the check.
    check = fresh.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert check.rc == 0, check.stderr + check.stdout
