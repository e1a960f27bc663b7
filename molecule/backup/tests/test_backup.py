"""pgBackRest with a dedicated repository host (`repo`, reached over TLS),
asked the way an operator asks (the playbooks, pgbackrest info, Letta's REST
API); the hosts read only for units, modes and the repository's files.

The tests run in file order: each builds on the state the one before left
(backups taken, failures made and mended, an upgrade and the restore of its
backup, then a restore onto the fresh box). `fresh` is never converged before
its restore. The commands README.md and docs/backups.md print for backup and
restore are copied out of the documents and run as printed, with the
documents' placeholders (INVENTORY, db1, an example label or time) replaced
by this scenario's; the last test checks every one of them ran.
"""
import json
import os
import re
import shlex
import subprocess
import time
import uuid

import pytest
import testinfra
import yaml
from stacktest import (EPHEMERAL, PROJECT, SCENARIO, VARS, Letta, LettaDatabase, PlaybookRun, exposure,
                       project_playbook, run_playbook, unit_property)

testinfra_hosts = ["stack"]

HOST_VARS = {name: yaml.safe_load((SCENARIO / "inventory" / "host_vars" / f"{name}.yml").read_text())
             for name in ("stack", "fresh")}
STANZA = VARS["postgresql_backup_stanza"]
PASSWORD = VARS["postgresql_db_password"]
OLD_RELEASE = VARS["letta_version"]
NEW_RELEASE = "0.16.8"
OLD_SCHEMA = yaml.safe_load((PROJECT / "roles" / "letta" / "vars" / "main.yml").read_text())[
    "_letta_releases"][OLD_RELEASE]["alembic_head"]
STACK_LETTA = Letta(HOST_VARS["stack"]["letta_port"])
FRESH_LETTA = Letta(HOST_VARS["fresh"]["letta_port"])
STACK_DB = LettaDatabase(HOST_VARS["stack"]["postgresql_port"], PASSWORD)
RESTORE_TARGET = str(SCENARIO / "inventory" / "restore-target.yml")
TIMERS = ["pgbackrest-backup-full.timer", "pgbackrest-backup-diff.timer"]
REPO_DIR = "/var/lib/pgbackrest"
DATA_DIR = "/var/lib/postgresql/17/main"
DOCUMENTS = [PROJECT / "README.md", PROJECT / "docs" / "backups.md"]


def box(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


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


def data_directory(host):
    """Every file of the cluster's data directory with its size, mode and modification time."""
    result = host.run(f"find {DATA_DIR} -printf '%P %s %m %T@\\n' | sort | sha1sum")
    assert result.rc == 0, result.stderr
    return result.stdout


def create_agent(letta, prefix):
    status, agent = letta.create_agent(f"{prefix}-{uuid.uuid4().hex[:8]}")
    assert status == 200, agent
    return agent


def postgres_sql(host, sql, database="postgres"):
    result = host.run(f"runuser -u postgres -- psql -X -p {HOST_VARS['stack']['postgresql_port']} -d {database} "
                      f"-Atc {shlex.quote(sql)}")
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def wait_until(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"not within {seconds} s: {what}")


# --- the documents' commands ------------------------------------------------

COMMAND = re.compile(r"ansible-playbook -i INVENTORY playbooks/(\w+)\.yml[^`\n]*")
RAN = set()
# What one test leaves the next (pytest's cache is off under Molecule).
STATE = {}


def documented_commands():
    """Every backup and restore command the documents print (docs/backups.md: all of its own)."""
    commands = set()
    for document in DOCUMENTS:
        for match in COMMAND.finditer(document.read_text()):
            if document.name == "README.md" and match.group(1) not in ("backup", "restore"):
                continue
            commands.add(match.group(0).strip())
    return commands


def documented(*needles, without=()):
    """The one documented command that holds every needle and none of `without`."""
    found = [command for command in documented_commands()
             if all(needle in command for needle in needles) and not any(other in command for other in without)]
    assert len(found) == 1, f"{needles}: {found}"
    return found[0]


def run_documented(command, replace=None, inventories=(), extra=()):
    """Run a command as a document prints it, from the project's root, with
    INVENTORY as this scenario's inventory (and `inventories` after it) and each
    `replace` key (a placeholder of the document) replaced by its value."""
    RAN.add(command)
    text = command
    for placeholder, value in (replace or {}).items():
        assert placeholder in text, f"{placeholder!r} not in {command!r}"
        text = text.replace(placeholder, value)
    argv = []
    for word in shlex.split(text):
        argv += [os.environ["MOLECULE_INVENTORY_FILE"]] + [x for i in inventories for x in ("-i", i)] \
            if word == "INVENTORY" else [word]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run(argv + list(extra), cwd=PROJECT, env=env, capture_output=True, text=True,
                            check=False, timeout=1500)
    return PlaybookRun(result.returncode, result.stdout, result.stderr, False)


# --- the converged layout -----------------------------------------------------

def test_check_mode_on_the_converged_box_changes_nothing():
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.rc == 0, run.tail()
    assert run.recap["failed"] == 0 and run.recap["changed"] == 0, run.tail()
    for key in ("server.key", "client.key"):
        secret_lines = [line for line in (EPHEMERAL / "tls" / key).read_text().splitlines() if "-----" not in line]
        assert not any(line in run.output for line in secret_lines), f"{key} in the output"
    assert VARS["postgresql_backup_cipher_pass"] not in run.output


def test_status_and_verify_report_the_backups():
    verify = run_playbook(project_playbook("verify.yml"))
    assert verify.rc == 0, verify.tail()
    status = run_documented(documented("playbooks/status.yml"))
    assert status.rc == 0, status.tail()
    assert f"pgbackrest stanza {STANZA}: check ok, timers active" in status.flat_output, status.tail()
    assert "NEEDS ATTENTION" not in status.flat_output, status.tail()


def test_config_points_at_the_repository_host_and_is_postgres_only(host):
    config = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (config.user, config.group, config.mode) == ("postgres", "postgres", 0o640)
    assert f"[{STANZA}]" in config.content_string
    assert "repo1-host-type=tls" in config.content_string
    assert "repo1-cipher-type=aes-256-cbc" in config.content_string
    assert "lock-path=/var/spool/pgbackrest/lock" in config.content_string


def test_the_repository_lives_on_the_repository_host_encrypted(host):
    repo = box("repo")
    assert repo.service("pgbackrest.service").is_running
    assert not host.file(f"{REPO_DIR}/backup/{STANZA}").exists, "the database host holds a repository of its own"
    for name in ("backup/%s/backup.info" % STANZA, "archive/%s/archive.info" % STANZA):
        head = repo.run(f"head -c 8 {REPO_DIR}/{name}").stdout
        assert head == "Salted__", f"{name} is not encrypted: {head!r}"
    assert VARS["postgresql_backup_cipher_pass"] not in repo.run("cat /etc/pgbackrest/conf.d/*.conf").stdout


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
    assert exposure(host, unit) <= 2.0
    # Debian's unit of the TLS server, with the role's drop-in.
    assert exposure(box("repo"), "pgbackrest.service") <= 2.0
    assert unit_property(host, unit, "User") == "postgres"
    assert unit_property(host, unit, "ProtectSystem") == "strict"
    assert unit_property(host, unit, "NoNewPrivileges") == "yes"
    assert unit_property(host, unit, "PrivateTmp") == "yes"


def test_pgbackrest_check_passes(host):
    result = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert result.rc == 0, result.stderr + result.stdout


def start_backup_service(host, kind):
    result = host.run(f"systemctl start pgbackrest-backup@{kind}.service")
    journal = host.run(f"journalctl -u pgbackrest-backup@{kind}.service -n 30 --no-pager").stdout
    return result.rc, journal


def test_the_timers_full_and_diff_backups_land_on_the_repository_host_and_retention_expires(host):
    repo = box("repo")
    made = []
    for kind in ("full", "diff", "full"):
        rc, journal = start_backup_service(host, kind)
        assert rc == 0, journal
        newest = info(host)["backup"][-1]
        assert newest["type"] == kind, newest
        assert repo.file(f"{REPO_DIR}/backup/{STANZA}/{newest['label']}").is_directory
        made.append(newest["label"])
    # postgresql_backup_retention_full: 1 -> the second full expired the first and its differential.
    kept = labels(host)
    assert made[2] in kept
    assert made[0] not in kept and made[1] not in kept, kept
    assert not repo.file(f"{REPO_DIR}/backup/{STANZA}/{made[0]}").exists


def test_wal_is_archived_on_the_repository_host(host):
    repo = box("repo")
    segment = postgres_sql(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    postgres_sql(host, "CREATE TABLE IF NOT EXISTS wal_poke (n int); INSERT INTO wal_poke VALUES (0); SELECT pg_switch_wal()")
    # WAL segment names of one timeline sort in the order they were written.
    wait_until(lambda: re.sub(r"\..*", "", postgres_sql(host, "SELECT last_archived_wal FROM pg_stat_archiver")) >= segment,
               60, f"{segment} archived")
    found = repo.run(f"find {REPO_DIR}/archive/{STANZA} -name '{segment}-*'").stdout.split()
    assert found, f"{segment} is not in the repository host's archive"


def test_backup_playbook_takes_a_new_backup(host):
    before = labels(host)
    run = run_documented(documented("playbooks/backup.yml", "postgresql_backup_type=diff"))
    assert run.rc == 0, run.tail()
    backups = info(host)["backup"]
    assert backups[-1]["label"] not in before
    assert backups[-1]["type"] == "diff"
    assert backups[-1]["label"] in run.output
    annotated = run_playbook(project_playbook("backup.yml"), extra_vars=[{
        "postgresql_backup_type": "diff", "postgresql_backup_annotation": {"reason": "test"}}])
    assert annotated.rc == 0, annotated.tail()
    assert info(host)["backup"][-1].get("annotation") == {"reason": "test"}


# --- failures made to happen --------------------------------------------------

def health_reports(*needles):
    """verify.yml fails and status.yml names each needle."""
    verify = run_playbook(project_playbook("verify.yml"))
    assert verify.rc != 0, verify.tail()
    status = run_playbook(project_playbook("status.yml"))
    assert status.rc != 0, status.tail()
    for needle in needles:
        assert needle in verify.flat_output, verify.tail()
        assert needle in status.flat_output, status.tail()


def health_passes():
    verify = run_playbook(project_playbook("verify.yml"))
    assert verify.rc == 0, verify.tail()
    status = run_playbook(project_playbook("status.yml"))
    assert status.rc == 0, status.tail()
    assert "NEEDS ATTENTION" not in status.flat_output, status.tail()


def test_a_failed_backup_fails_health_until_a_backup_succeeds(host):
    repo = box("repo")
    backup_dir = f"{REPO_DIR}/backup/{STANZA}"
    assert repo.run(f"chmod 0500 {backup_dir}").rc == 0
    try:
        rc, journal = start_backup_service(host, "diff")
        assert rc != 0, f"the backup succeeded with its repository unwritable: {journal}"
        health_reports("backup FAILED: pgbackrest-backup@diff.service")
    finally:
        assert repo.run(f"chmod 0750 {backup_dir}").rc == 0
    rc, journal = start_backup_service(host, "diff")
    assert rc == 0, journal
    health_passes()


def archiver():
    return STACK_DB.query("SELECT failed_count, coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) "
                          "FROM pg_stat_archiver")[0]


def test_failing_wal_archiving_fails_health_until_it_archives_again(host):
    repo = box("repo")
    archive_dirs = f"find {REPO_DIR}/archive/{STANZA} -mindepth 1 -type d"
    failed_before = archiver()[0]
    assert repo.run(f"{archive_dirs} -exec chmod 0500 {{}} +").rc == 0
    try:
        postgres_sql(host, "CREATE TABLE IF NOT EXISTS wal_poke (n int); INSERT INTO wal_poke VALUES (1); "
                           "SELECT pg_switch_wal()")
        wait_until(lambda: archiver()[0] > failed_before and archiver()[1], 60, "archive-push fails")
        health_reports("WAL archiving FAILING")
    finally:
        assert repo.run(f"{archive_dirs} -exec chmod 0750 {{}} +").rc == 0
    postgres_sql(host, "INSERT INTO wal_poke VALUES (2); SELECT pg_switch_wal()")
    wait_until(lambda: not archiver()[1], 120, "archiving works again")
    health_passes()


def test_a_certificate_expiring_within_21_days_is_reported(host):
    """A client certificate valid for ten days, signed by the scenario's CA for
    the same key; the next test's converge puts the inventory's back."""
    tls = EPHEMERAL / "tls"
    short = tls / "client-10-days.crt"
    subprocess.run(["openssl", "x509", "-req", "-in", str(tls / "client.csr"), "-CA", str(tls / "ca.crt"),
                    "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", "10", "-extfile",
                    str(tls / "client.ext"), "-out", str(short)], check=True, capture_output=True)
    result = host.run("cat > /etc/pgbackrest/tls/client.crt <<'EOF'\n%s\nEOF" % short.read_text().strip())
    assert result.rc == 0, result.stderr
    health_reports("certificate /etc/pgbackrest/tls/client.crt expires")


def test_site_brings_back_every_stopped_service(host):
    repo = box("repo")
    host.run("systemctl stop postgresql@17-main.service")
    assert not host.service("postgresql@17-main.service").is_running
    run = run_playbook(project_playbook("site.yml"))
    assert run.rc == 0, run.tail()
    assert host.service("postgresql@17-main.service").is_running
    STACK_LETTA.wait_healthy()
    host.run("systemctl stop letta.service " + " ".join(TIMERS))
    repo.run("systemctl stop pgbackrest.service")
    run = run_playbook("converge.yml")
    assert run.rc == 0, run.tail()
    for unit in ["letta.service"] + TIMERS:
        assert unit_property(host, unit, "ActiveState") == "active", unit
    assert repo.service("pgbackrest.service").is_running
    STACK_LETTA.wait_healthy()
    # The converge also put the inventory's client certificate back.
    health_passes()


# --- restores -----------------------------------------------------------------

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


def test_a_stopped_cluster_holding_data_is_not_overwritten_without_force(host):
    create_agent(STACK_LETTA, "stopped")
    expected = STACK_LETTA.snapshot()
    assert host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check").rc == 0
    assert host.run("systemctl stop letta.service postgresql@17-main.service").rc == 0
    before = data_directory(host)
    run = run_playbook(project_playbook("restore.yml"), "--limit", "stack")
    assert run.rc != 0, run.tail()
    assert "postgresql_backup_restore_force" in run.flat_output and "does not answer" in run.flat_output, run.tail()
    assert run.recap["changed"] == 0, run.tail()
    assert data_directory(host) == before
    # With force, as docs/backups.md prints it: the latest state.
    run = run_documented(documented("restore.yml", "--limit db1,letta1", "restore_force=true",
                                    without=("restore_target",)), replace={"db1,letta1": "stack"})
    assert run.rc == 0, run.tail()
    STACK_LETTA.wait_healthy()
    assert STACK_LETTA.snapshot() == expected


def test_the_upgrade_backup_lands_on_the_repository_host(host):
    create_agent(STACK_LETTA, "before-upgrade")
    STATE["before-upgrade"] = STACK_LETTA.snapshot()
    run = run_playbook(project_playbook("site.yml"), extra_vars=[{"letta_version": NEW_RELEASE}])
    assert run.rc == 0, run.tail()
    newest = info(host)["backup"][-1]
    assert newest.get("annotation", {}).get("letta-upgrade") == f"{OLD_RELEASE} to {NEW_RELEASE}", newest
    assert box("repo").file(f"{REPO_DIR}/backup/{STANZA}/{newest['label']}").is_directory
    assert newest["label"] in host.file("/var/lib/letta/pre-migration-backups").content_string
    assert STACK_LETTA.wait_healthy()["version"] == NEW_RELEASE
    create_agent(STACK_LETTA, "after-upgrade")
    STATE["upgrade-label"] = newest["label"]


def test_the_pre_upgrade_backup_restored_under_the_newer_release_does_not_start_it(host):
    label = STATE["upgrade-label"]
    run = run_documented(documented("restore.yml", "--limit db1,letta1", "restore_target=set"),
                         replace={"db1,letta1": "stack", "20261126-100000F": label},
                         extra=["-e", f"letta_version={NEW_RELEASE}"])
    assert run.rc != 0, run.tail()
    assert f"-e letta_version={OLD_RELEASE}" in run.flat_output, run.tail()
    assert unit_property(host, "letta.service", "ActiveState") != "active"
    assert STACK_DB.query("SELECT version_num FROM alembic_version")[0][0] == OLD_SCHEMA
    # docs/backups.md's next command, with the release the message named.
    run = run_documented(documented("playbooks/site.yml -e letta_version="),
                         replace={"letta_version=0.15.1": f"letta_version={OLD_RELEASE}"})
    assert run.rc == 0, run.tail()
    assert STACK_LETTA.wait_healthy()["version"] == OLD_RELEASE
    assert STACK_LETTA.snapshot() == STATE["before-upgrade"]


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
    run = run_documented(documented("restore.yml", "--limit db1,letta1", "restore_target=time"),
                         replace={"db1,letta1": "stack", "2026-11-26 10:15:00+00": target})
    assert run.rc == 0, run.tail()
    STACK_LETTA.wait_healthy()
    after = STACK_LETTA.snapshot()
    assert doomed["id"] in after and kept["id"] in after
    assert after == before


def test_restore_onto_the_fresh_box_gives_back_the_same_agents(host):
    fresh = box("fresh")
    assert not fresh.package("postgresql-17").is_installed, "the fresh box was converged before its restore"
    create_agent(STACK_LETTA, "before-move")
    run = run_documented(documented_readme_backup())
    assert run.rc == 0, run.tail()
    expected = STACK_LETTA.snapshot()
    assert len(expected) >= 3
    run = run_documented(documented("restore.yml", "--limit newdb,newletta"),
                         replace={"newdb,newletta": "fresh"}, inventories=[RESTORE_TARGET])
    assert run.rc == 0, run.tail()
    FRESH_LETTA.wait_healthy()
    assert FRESH_LETTA.snapshot() == expected
    run = run_documented(documented("site.yml", "--limit newdb,newletta"),
                         replace={"newdb,newletta": "fresh"}, inventories=[RESTORE_TARGET])
    assert run.rc == 0, run.tail()
    for timer in TIMERS:
        assert unit_property(fresh, timer, "ActiveState") == "active", timer
    # The restored cluster archives through the repository host and passes the check.
    check = fresh.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert check.rc == 0, check.stderr + check.stdout


def documented_readme_backup():
    """README's plain backup.yml command (a full backup)."""
    found = [command for command in documented_commands() if command.endswith("playbooks/backup.yml")]
    assert len(found) == 1, found
    return found[0]


def test_every_documented_backup_and_restore_command_ran():
    assert documented_commands() - RAN == set()
