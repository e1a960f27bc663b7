"""Letta on PostgreSQL on a fresh box: asked the way users ask (HTTP, psycopg2),
the host read only for what users cannot see (modes, owners, units)."""
import json
import re
import time
import uuid

import psycopg2
import pytest
from stacktest import UV, UV_ENV, VARS, Letta, LettaDatabase, run_playbook, unit_property

PASSWORD = VARS["scenario_db_password"]
VERSION = VARS["scenario_letta_version"]
PG_PORT = VARS["scenario_postgresql_port"]
LETTA = Letta(VARS["scenario_letta_port"])
DATABASE = LettaDatabase(PG_PORT, PASSWORD)
query = DATABASE.query


def create_agent():
    return LETTA.create_agent(f"verify-{uuid.uuid4().hex[:8]}")


def test_letta_service_active_and_enabled(host):
    unit = host.service("letta.service")
    assert unit.is_running
    assert unit.is_enabled
    props = host.run("systemctl show letta.service -p User -p Restart -p EnvironmentFiles -p After").stdout
    assert "User=letta" in props
    assert "Restart=always" in props
    assert "/etc/letta/letta.env" in props
    assert "postgresql.service" in props


def test_health_reports_pinned_version():
    body = LETTA.wait_healthy(90)
    assert body == {"version": VERSION, "status": "ok"}


def test_process_runs_as_letta_from_its_own_venv(host):
    pid = unit_property(host, "letta.service", "MainPID")
    assert host.run(f"stat -c %U /proc/{pid}").stdout.strip() == "letta"
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
    assert f"/opt/letta/{VERSION}/venv/" in cmdline


def test_venv_matches_the_lock_and_is_root_owned(host):
    venv = host.file(f"/opt/letta/{VERSION}/venv")
    assert venv.user == "root" and venv.mode & 0o002 == 0
    assert host.file(f"/opt/letta/{VERSION}/venv.lock.txt").contains(f"^letta=={VERSION}")
    freeze = host.run(f"{UV} pip list --python /opt/letta/{VERSION}/venv/bin/python --format json")
    installed = {p["name"].lower(): p["version"] for p in json.loads(freeze.stdout)}
    assert installed["letta"] == VERSION
    # Pinned by the lock derived from upstream's uv.lock; an unpinned resolve gets a pydantic Letta cannot import.
    assert installed["pydantic"] == "2.11.7"
    audit = host.run(f"{UV_ENV} {UV} pip sync --dry-run --python /opt/letta/{VERSION}/venv/bin/python /opt/letta/{VERSION}/venv.lock.txt")
    assert audit.rc == 0, audit.stderr
    assert "Would install" not in audit.stderr and "Would uninstall" not in audit.stderr


def test_unit_is_hardened(host):
    result = host.run("systemd-analyze security --no-pager letta.service")
    assert result.rc == 0, result.stderr
    found = re.search(r"exposure level for letta\.service: ([0-9.]+)", result.stdout)
    assert found, result.stdout[-500:]
    # An unhardened unit scores about 9.6; FACTS section 5 reached 1.3.
    assert float(found.group(1)) <= 2.0, found.group(0)


def test_the_transient_units_reading_the_database_are_sandboxed_as_the_service(host):
    unit = "letta-sandbox-check"
    result = run_playbook("transient_sandbox.yml", extra_vars=[{"transient_unit": unit}])
    assert result.rc == 0, result.tail()
    try:
        assert host.check_output(f"systemctl show -p User --value {unit}.service") == "letta"
        found = re.search(r"exposure level for \S+: ([0-9.]+)",
                          host.run(f"systemd-analyze security --no-pager {unit}.service").stdout)
        assert found and float(found.group(1)) <= 2.0, found and found.group(0)
    finally:
        host.run(f"systemctl stop {unit}.service")


def test_letta_role_logs_in_over_tcp_and_vector_is_installed():
    rows = query("SELECT extname FROM pg_extension WHERE extname = 'vector'")
    assert rows == [("vector",)]
    assert query("SELECT current_user, inet_server_port()") == [("letta", PG_PORT)]


def test_wrong_password_is_refused():
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        DATABASE.connect(password=PASSWORD + "-wrong")


def test_password_is_stored_as_scram(host):
    result = host.run(f"runuser -u postgres -- psql -p {PG_PORT} -Atc "
                      "\"SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'letta'\"")
    assert result.stdout.strip() == "t", result.stderr


def test_database_owned_by_letta_and_schema_at_head(host):
    assert query("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'letta'") == [("letta",)]
    assert query("SELECT count(*) FROM alembic_version")[0][0] == 1
    heads = host.run("cd /var/lib/letta/src/letta-%s && /opt/letta/current/venv/bin/alembic heads" % VERSION)
    assert heads.rc == 0, heads.stderr
    assert query("SELECT version_num FROM alembic_version")[0][0] in heads.stdout


def test_agent_creation_stores_messages_in_postgres_mode():
    status, agent = create_agent()
    assert status == 200, agent
    status, messages = LETTA.messages(agent["id"])
    assert status == 200 and len(messages) >= 1, messages
    assert query("SELECT count(*) FROM messages WHERE agent_id = %s", (agent["id"],))[0][0] >= 1
    # The SQLite-only code path creates this table; the unit hands Letta LETTA_PG_URI, so it never runs.
    assert query("SELECT to_regclass('message_sequence')") == [(None,)]


def test_deleted_agent_is_gone():
    status, agent = create_agent()
    assert status == 200, agent
    status, body = LETTA.delete_agent(agent["id"])
    assert status == 200, body
    status, body = LETTA.agent(agent["id"])
    assert status == 404, body
    assert query("SELECT count(*) FROM agents WHERE id = %s", (agent["id"],)) == [(0,)]


def test_env_file_is_private_and_holds_the_uri(host):
    env = host.file("/etc/letta/letta.env")
    assert (env.user, env.group, env.mode) == ("root", "letta", 0o640)
    assert env.mode & 0o007 == 0
    lines = env.content_string.splitlines()
    assert f'LETTA_PG_URI="postgresql://letta:{PASSWORD}@127.0.0.1:{PG_PORT}/letta"' in lines
    conf = host.file("/etc/letta")
    assert (conf.user, conf.group, conf.mode) == ("root", "letta", 0o750)
    # The service user sees it, nobody else does.
    assert host.run("runuser -u nobody -- cat /etc/letta/letta.env").rc != 0
    assert host.run("runuser -u letta -- cat /etc/letta/letta.env").rc == 0


def test_state_dir_belongs_to_service_user(host):
    state = host.file("/var/lib/letta")
    assert (state.user, state.group, state.mode) == ("letta", "letta", 0o750)
    assert host.file("/var/lib/letta/.letta").is_directory


def test_agent_creation_after_postgresql_restart(host):
    before = host.run("systemctl show -p ActiveEnterTimestampMonotonic --value postgresql@17-main.service").stdout
    assert host.run("systemctl restart postgresql.service").rc == 0
    after = host.run("systemctl show -p ActiveEnterTimestampMonotonic --value postgresql@17-main.service").stdout
    assert before != after, "PostgreSQL did not restart"
    status, agent = create_agent()
    assert status == 200, agent
    assert query("SELECT count(*) FROM agents WHERE id = %s", (agent["id"],)) == [(1,)]


def test_killed_server_comes_back_by_itself(host):
    old_pid = unit_property(host, "letta.service", "MainPID")
    assert host.run("systemctl kill -s KILL letta.service").rc == 0
    deadline = time.monotonic() + 60
    new_pid = old_pid
    while time.monotonic() < deadline:
        new_pid = unit_property(host, "letta.service", "MainPID")
        if new_pid not in (old_pid, "0") and host.service("letta.service").is_running:
            break
        time.sleep(1)
    assert new_pid not in (old_pid, "0"), "letta.service did not restart within 60 s"
    assert LETTA.wait_healthy(60)["version"] == VERSION
    status, agent = create_agent()
    assert status == 200, agent


def test_check_mode_on_converged_box_changes_nothing_and_leaks_no_secret():
    result = run_playbook("converge.yml", "--check", "--diff", "-v")
    assert result.rc == 0, result.tail(3000)
    assert result.recap["changed"] == 0 and result.recap["failed"] == 0, result.tail(1500)
    assert PASSWORD not in result.output


def test_migrations_ran_and_are_recorded(host):
    assert query("SELECT count(*) FROM alembic_version") == [(1,)]
    assert host.file("/var/lib/letta/schema-applied").content_string == (
        f"letta {VERSION} on 127.0.0.1:{PG_PORT}/letta")


def test_a_converged_box_does_not_ask_alembic_again():
    result = run_playbook("converge.yml", json_output=True)
    assert result.rc == 0, result.stdout[-2000:]
    migrations = result.task_results("Bring the database schema to this release")
    assert migrations and all(r.get("skipped") for r in migrations), migrations
    assert result.task_results("Upgrade the schema to this release") == []
    assert result.recap["changed"] == 0, result.report["stats"]


BASE = {
    "letta_version": VERSION,
    "letta_port": VARS["scenario_letta_port"],
    "letta_db_port": PG_PORT,
    "letta_db_password": PASSWORD,
}
BAD_INPUTS = {
    "runbook placeholder uri": ("letta", {"letta_db_password": None,
                                          "letta_database_uri": "postgresql://user:pass@host:5432/dbname"},
                                "letta_database_uri"),
    "changeme password": ("letta", {"letta_db_password": "changeme"}, "letta_db_password"),
    "empty password": ("letta", {"letta_db_password": ""}, "letta_db_password"),
    "password letta cannot carry in its URI": ("letta", {"letta_db_password": "Kq7+vT2/mXw9=L%4"}, "letta_db_password"),
    "unparsable uri": ("letta", {"letta_db_password": None, "letta_database_uri": "letta@127.0.0.1/letta"},
                       "letta_database_uri"),
    "version without lock": ("letta", {"letta_version": "0.13.0"}, "letta_version"),
    "not the server line": ("letta", {"letta_version": "0.34.12"}, "letta_version"),
    "placeholder provider key": ("letta", {"letta_openai_api_key": "sk-..."}, "letta_openai_api_key"),
    "provider key with whitespace": ("letta", {"letta_openai_api_key": "sk-proj-Abc123 Def456Ghi789Jkl012"},
                                     "letta_openai_api_key"),
    "public bind without password": ("letta", {"letta_host": "0.0.0.0"}, "letta_host"),
    "placeholder postgresql password": ("postgresql", {"postgresql_db_password": "changeme",
                                                       "postgresql_port": PG_PORT}, "postgresql_db_password"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_early_naming_the_variable(host, case):
    role, override, variable = BAD_INPUTS[case]
    extra = {"bad_input_role": role, **(BASE if role == "letta" else {}), **override}
    extra = {k: v for k, v in extra.items() if v is not None}
    env_before = host.file("/etc/letta/letta.env").md5sum
    result = run_playbook("bad_input.yml", extra_vars=[extra], json_output=True)
    assert result.rc != 0, "the bad input was accepted"
    failures = [res for res in result.task_results() if res.get("failed")]
    assert failures, result.stdout[-2000:]
    failure = failures[-1]
    # A looped assert reports the item's message inside results.
    messages = [failure.get("msg", "")] + [item.get("msg", "") for item in failure.get("results", [])]
    message = json.dumps(messages)
    assert variable in message, message
    assert result.recap["changed"] == 0, result.report["stats"]
    assert PASSWORD not in result.stdout
    assert host.file("/etc/letta/letta.env").md5sum == env_before
