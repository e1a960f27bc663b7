"""Letta upgraded in place by site.yml through every supported release, without losing data.

The tests run in file order and each moves the box one step: data written
under 0.14.0, each upgrade (one restart, a backup before it, the old release
kept, the patch on the new venv, then changed=0 and a clean check mode), a
pre-migration backup and then a migration made to fail and rolled back on
both Letta hosts, a downgrade refused untouched, and a reboot. Clients run here on the runner against the box's loopback ports.
Every test takes `host`: pytest groups the tests of a parametrized fixture
together, and the order here is the story.
"""
import json
import os
import signal
import subprocess
import time

import pytest
import testinfra
import yaml
from alerting import Monitor, Webhook
from stacktest import (PROJECT, SCENARIO, VARS, Letta, LettaDatabase, journal_cursor, project_playbook, read_recap,
                       restart_box, run_playbook, unit_starts_since, wait_for)

testinfra_hosts = ["stack"]
HOST_VARS = {name: yaml.safe_load((SCENARIO / "inventory" / "host_vars" / f"{name}.yml").read_text())
             for name in ("stack", "twin")}
LETTA = Letta(HOST_VARS["stack"]["letta_port"], password=VARS["letta_server_password"])
# The second Letta host on the same database; `stack` backs up and migrates.
TWIN_LETTA = Letta(HOST_VARS["twin"]["letta_port"], password=VARS["letta_server_password"])
DATABASE = LettaDatabase(VARS["postgresql_port"], VARS["postgresql_db_password"])
MONITOR = Monitor("127.0.0.1", VARS["monitoring_prometheus_port"], VARS["monitoring_alertmanager_port"])
# test_02 and test_03 run with `stack` as the monitoring host too (a second inventory source).
MONITORED = ("-i", str(SCENARIO / "inventory" / "monitored.yml"))
# Every release the collection supports, oldest first (roles/letta/vars/main.yml
# names them); the scenario converges the oldest and upgrades through the rest.
LETTA_RELEASES = yaml.safe_load((PROJECT / "roles" / "letta" / "vars" / "main.yml").read_text())["_letta_releases"]
RELEASES = sorted(LETTA_RELEASES,
                  key=lambda release: tuple(int(part) for part in release.split(".")))
FIRST, MIDDLE, LAST = RELEASES
assert VARS["letta_version"] == FIRST
STANZA = "letta"
# Made to fail by the test below: 0.16.8's migration 9fa274fb0b83 updates
# agents after an earlier one of the same run committed.
TRAP = "upgrade_scenario_refuses_updates"


def site(*args, version=None):
    extra = [{"letta_version": version}] if version else []
    return run_playbook(project_playbook("site.yml"), *args, extra_vars=extra)


def backups(host):
    out = host.check_output(f"runuser -u postgres -- pgbackrest --stanza={STANZA} --output=json info")
    return json.loads(out)[0]["backup"]


def alembic_revision():
    return DATABASE.query("SELECT version_num FROM alembic_version")[0][0]


def current_release(host):
    return host.check_output("readlink /opt/letta/current").rsplit("/", 1)[-1]


def twin():
    return testinfra.get_host("ansible://twin", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def letta_hosts_state(host):
    """Per Letta host: the release that answers, the link, the schema record; and the database's revision."""
    return ({name: (letta.wait_healthy()["version"], current_release(box),
                    box.file("/var/lib/letta/schema-applied").content_string)
             for name, letta, box in (("stack", LETTA, host), ("twin", TWIN_LETTA, twin()))},
            alembic_revision())


def fingerprint(host):
    """What a refused run must leave as it was: links, unit, config, records, schema, process."""
    files = host.check_output(
        "ls -l --time-style=+%s /opt/letta /var/lib/letta; sha256sum /etc/letta/letta.env /etc/systemd/system/letta.service "
        "/var/lib/letta/schema-applied /var/lib/letta/pre-migration-backups; systemctl show -p MainPID --value letta.service")
    return files, alembic_revision()


def assert_check_mode_changes_nothing(version=None, extra=()):
    check = site("--check", *extra, version=version)
    assert check.rc == 0, check.tail()
    for name in ("stack", "twin"):
        recap = read_recap(check.stdout, name)
        assert recap["changed"] == 0 and recap["failed"] == 0, (name, check.tail())


def assert_converged(version, extra=()):
    """A re-run changes nothing, and check mode neither changes nor fails anything."""
    run = site(*extra, version=version)
    assert run.rc == 0, run.tail()
    for name in ("stack", "twin"):
        assert read_recap(run.stdout, name)["changed"] == 0, (name, run.tail())
    assert_check_mode_changes_nothing(version, extra)


@pytest.fixture(scope="module")
def state():
    """What one step leaves for the next."""
    return {}


def test_01_data_written_under_the_first_release(host, state):  # pylint: disable=unused-argument
    assert LETTA.wait_healthy()["version"] == FIRST
    # Molecule's idempotence step re-ran the converge; check mode here.
    assert_check_mode_changes_nothing()
    for name in ("upgrade-alice", "upgrade-bob"):
        status, agent = LETTA.create_agent(
            name, memory_blocks=[{"label": "human", "value": f"{name} likes backups"},
                                 {"label": "persona", "value": f"{name}'s careful assistant"}],
            initial_message_sequence=[{"role": "user", "content": f"remember {name}'s first words"}])
        assert status == 200, agent
    state["data"] = LETTA.snapshot()
    assert len(state["data"]) == 2
    assert all(len(agent["messages"]) >= 2 and len(agent["blocks"]) == 2 for agent in state["data"].values())


def upgrade_step(host, state, version, extra=()):
    """site.yml with the next release: done, healthy, one restart, the data unchanged."""
    before = journal_cursor(host)
    backups_before = len(backups(host))
    previous = current_release(host)
    run = site(*extra, version=version)
    assert run.rc == 0, run.tail(6000)
    assert LETTA.wait_healthy()["version"] == version
    assert TWIN_LETTA.wait_healthy()["version"] == version
    assert unit_starts_since(host, "letta.service", before) == 1
    assert LETTA.snapshot() == state["data"]
    assert current_release(host) == version
    # The previous release stays whole for a rollback.
    assert host.file(f"/opt/letta/{previous}/venv/bin/letta").exists
    taken = backups(host)
    assert len(taken) == backups_before + 1
    assert taken[-1]["annotation"]["letta-upgrade"] == f"{previous} to {version}"
    assert host.file("/var/lib/letta/pre-migration-backups").contains(f"^{previous} {version} {taken[-1]['label']}$")
    # The patch module, asked about the new venv, has nothing left to do.
    patch = run_playbook(project_playbook("patch.yml"), "--check", json_output=True)
    assert patch.rc == 0, patch.tail()
    results = patch.task_results("Make message.py match letta_patch_state")
    assert len(results) == 2, patch.tail()
    for result in results:
        assert not result["changed"] and result["status_before"] == "patched", result
        assert result["letta_version"] == version and result["python"] == "/opt/letta/current/venv/bin/python", result


def test_02_upgrade_to_the_runbook_release(host, state):
    """Also planned work as the monitoring host (stack) sees it: the Letta alerts of both hosts fire in Prometheus
    while they restart, and none reaches the webhook; the run's silence is expired after."""
    monitored = site(*MONITORED)
    assert monitored.rc == 0, monitored.tail()
    webhook, started = Webhook(), time.time()
    try:
        upgrade_step(host, state, MIDDLE, MONITORED)
        # Long enough for a notification the expiry let through to arrive (group_wait 1s, group_interval 5s).
        time.sleep(15)
    finally:
        webhook.close()
    window = int(time.time() - started) + 30
    fired = MONITOR.query(f'max_over_time(ALERTS{{alertname=~"Letta.*", alertstate="firing"}}[{window}s])')
    assert fired, "no Letta alert fired during the upgrade: the silence proved nothing"
    notified = [alert["labels"] for message in webhook.received for alert in message["body"]["alerts"]
                if alert["labels"]["alertname"].startswith("Letta")]
    assert notified == []
    silences = [item for item in MONITOR.silences()
                if item["createdBy"] == "hybridstack.letta_livekit" and item["comment"] == "Letta upgrade by site.yml"]
    assert [item["status"]["state"] for item in silences] == ["expired"], silences
    assert {(matcher["name"], matcher["value"]) for matcher in silences[0]["matchers"]} == {
        ("alertname", "Letta.*"), ("host", "stack|twin")}


def test_03_converged_again_changes_nothing(host):  # pylint: disable=unused-argument
    assert_converged(MIDDLE, MONITORED)


def test_04a_a_failed_pre_migration_backup_leaves_every_host_on_the_old_release(host, state):
    """The backup `stack` takes before it migrates fails (its repository is unwritable): `stack` rolls back,
    and `twin`, which does not migrate, must not start the new release on the unmigrated schema."""
    before = letta_hosts_state(host)
    assert {answer[0] for answer in before[0].values()} == {MIDDLE}
    backup_dir = f"/var/lib/pgbackrest/backup/{STANZA}"
    host.run_expect([0], f"chmod 0500 {backup_dir}")
    try:
        run = site(version=LAST)
    finally:
        host.run_expect([0], f"chmod 0750 {backup_dir}")
    assert run.rc != 0, run.tail(6000)
    assert f"Upgrading Letta {MIDDLE} to {LAST} failed and was rolled back" in run.flat_output, run.tail(6000)
    assert letta_hosts_state(host) == before
    assert LETTA.snapshot() == state["data"]


def test_04_a_failed_migration_rolls_everything_back(host, state):
    with DATABASE.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE FUNCTION {TRAP}() RETURNS trigger LANGUAGE plpgsql AS "
                       f"$$BEGIN RAISE EXCEPTION 'injected by the upgrade scenario'; END$$")
        cursor.execute(f"CREATE TRIGGER {TRAP} BEFORE UPDATE ON agents FOR EACH STATEMENT EXECUTE FUNCTION {TRAP}()")
    revision = alembic_revision()
    run = site(version=LAST)
    assert run.rc != 0
    text = run.flat_output
    assert f"Upgrading Letta {MIDDLE} to {LAST} failed and was rolled back" in text, run.tail(6000)
    assert "alembic upgrade head failed" in text and "injected by the upgrade scenario" in text, run.tail(6000)
    assert "the database was restored from pgBackRest backup" in text, run.tail(6000)
    assert LETTA.wait_healthy()["version"] == MIDDLE
    assert current_release(host) == MIDDLE
    assert alembic_revision() == revision
    assert LETTA.snapshot() == state["data"]
    # The host that did not migrate is back on the old release too.
    assert TWIN_LETTA.wait_healthy()["version"] == MIDDLE
    assert current_release(twin()) == MIDDLE
    assert f"letta {MIDDLE} " in twin().file("/var/lib/letta/schema-applied").content_string
    state["trap_survived"] = DATABASE.query("SELECT count(*) FROM pg_trigger WHERE tgname = %s", (TRAP,))[0][0]


def site_process(version):
    """site.yml started in the background, as an operator's terminal would run it, its output line by line."""
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(project_playbook("site.yml")),
               "-e", json.dumps({"letta_version": version})]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONUNBUFFERED="1")
    return subprocess.Popen(command, cwd=SCENARIO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_05_an_interrupted_upgrade_is_finished_by_the_next_run_and_one_run_at_a_time(host, state):
    """The cause is gone. The upgrade is interrupted (SIGINT, as Ctrl-C) once Letta stopped; then two runs start
    together: exactly one proceeds and finishes the upgrade (taking over the dead run's lock), the other refuses
    before it stops anything, naming the lock."""
    assert state.get("trap_survived") == 1
    with DATABASE.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {TRAP} ON agents")
        cursor.execute(f"DROP FUNCTION {TRAP}()")
    interrupted = site_process(LAST)
    output = []
    for line in interrupted.stdout:
        output.append(line)
        if "Stop Letta on every host of this database" in line:
            break
    deadline = time.monotonic() + 120
    while host.run("systemctl is-active letta.service").stdout.strip() == "active":
        assert time.monotonic() < deadline, "".join(output)[-4000:]
        time.sleep(0.2)
    # Ctrl-C: the terminal signals the whole foreground process group, ansible-playbook and its workers.
    os.killpg(interrupted.pid, signal.SIGINT)
    output.append(interrupted.communicate(timeout=600)[0])
    assert interrupted.returncode != 0, "".join(output)[-4000:]
    assert host.run("systemctl is-active letta.service").stdout.strip() != "active"
    # What the interrupted run started on the hosts (a backup) ends with its SSH sessions.
    deadline = time.monotonic() + 60
    while host.run("pgrep -x pgbackrest").rc == 0 and time.monotonic() < deadline:
        time.sleep(1)

    runs = [site_process(LAST), site_process(LAST)]
    finished = [run.communicate(timeout=1500)[0] for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes[0] == 0 and codes[1] != 0, finished
    refused = finished[[run.returncode for run in runs].index(codes[1])]
    proceeded = finished[[run.returncode for run in runs].index(0)]
    assert "Another run is changing Letta on database" in " ".join(refused.split()), refused[-4000:]
    # Refused before any unit stopped: its stop task never ran.
    assert "Stop Letta on every host of this database" not in refused, refused[-4000:]
    assert "Took over the run lock of" in proceeded, proceeded[-4000:]
    assert LETTA.wait_healthy()["version"] == LAST
    assert TWIN_LETTA.wait_healthy()["version"] == LAST
    assert current_release(host) == LAST and current_release(twin()) == LAST
    assert LETTA.snapshot() == state["data"]
    assert alembic_revision() == LETTA_RELEASES[LAST]["alembic_head"]
    assert host.run("ls /var/lib/hybridstack/locks/*.lock").rc != 0, "the lock outlived the run that took it"


def test_06_converged_again_changes_nothing(host):  # pylint: disable=unused-argument
    assert_converged(LAST)


def test_07_a_downgrade_is_refused_before_anything_changes(host):
    before = fingerprint(host)
    run = site(version=MIDDLE)
    assert run.rc != 0
    text = run.flat_output
    assert f"letta_version {MIDDLE} is older than the running Letta {LAST}" in text, run.tail()
    label = host.check_output("awk '$1 == \"%s\" {print $3}' /var/lib/letta/pre-migration-backups" % MIDDLE).split()[-1]
    assert f"postgresql_backup_restore_set={label}" in text, run.tail()
    assert run.recap["changed"] == 0
    assert fingerprint(host) == before
    assert LETTA.wait_healthy()["version"] == LAST


def test_08_after_a_reboot_everything_is_back_by_itself(host, state):
    restart_box()
    for unit in ("postgresql.service", "letta.service", "livekit-server.service"):
        assert host.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled"
    assert LETTA.wait_healthy(seconds=240)["version"] == LAST
    wait_for(f"http://127.0.0.1:{VARS['livekit_port']}/", seconds=60)
    assert DATABASE.query("SELECT 1") == [(1,)]
    assert LETTA.snapshot() == state["data"]
    timers = host.check_output("systemctl list-timers --all --no-legend --output=json")
    scheduled = {timer["unit"]: timer for timer in json.loads(timers) if "pgbackrest" in timer["unit"]}
    assert len(scheduled) >= 2 and all(timer["next"] for timer in scheduled.values()), timers
