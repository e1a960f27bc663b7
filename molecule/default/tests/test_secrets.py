"""The leak hunt: every secret of the scenario is a unique random value, so any
occurrence of one (as given, or percent-encoded as in a URI) is a leak.

Runs after test_default.py. The order inside this file matters: the sampler
stops before any test puts a secret on the box's command lines, and the
journal is read before the file search writes its pattern file.
"""
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from stacktest import BOX_DIR, EPHEMERAL, STACK_UNITS, VARS, Letta, LettaDatabase, run_playbook, wait_for

SECRET_NAMES = ["postgresql_db_password", "letta_server_password", "letta_openai_api_key",
                "letta_anthropic_api_key", "livekit_api_key", "livekit_api_secret"]
SECRETS = {name: VARS[name] for name in SECRET_NAMES}
SECRETS["agent environment"] = VARS["livekit_agents_environment"]["AGENT_TOKEN"]
NEEDLES = {f"{name} ({form})": value for name, secret in SECRETS.items()
           for form, value in (("as given", secret), ("in a URI", urllib.parse.quote(secret, safe="")))}


def leaks(text, needles=None):
    return sorted(name for name, needle in (needles or NEEDLES).items() if needle in text)


def test_the_secrets_are_distinct_enough_to_hunt():
    assert len(set(SECRETS.values())) == len(SECRETS)
    assert all(len(value) >= 12 for value in SECRETS.values())
    assert all(c in SECRETS["letta_server_password"] for c in '+/=%@:\\"$`')


def test_playbook_output_at_vvvv_holds_no_secret():
    log = (EPHEMERAL / "ansible-vvvv.log").read_text(errors="replace")
    # The log really is -vvvv output of the converge and its re-run.
    assert "ESTABLISH SSH CONNECTION" in log and "PUT " in log
    assert log.count("PLAY RECAP") >= 3
    assert leaks(log) == []


def test_command_lines_during_the_converge_hold_no_secret(host):
    host.run_expect([0], "systemctl stop cmdline-sampler.service")
    sampled = host.file("/root/cmdlines.txt").content_string
    # It watched the converge: the migration and the venv builds ran meanwhile.
    assert "alembic" in sampled and "uv pip sync" in sampled, sampled[-2000:]
    assert leaks(sampled) == []


def test_letta_answers_with_the_server_password_only():
    letta = Letta(VARS["letta_port"], password=VARS["letta_server_password"])
    assert letta.wait_healthy()["status"] == "ok"
    status, body = Letta(VARS["letta_port"]).agents()
    assert status == 401, body
    status, agent = letta.create_agent("leak-hunt")
    assert status == 200, agent
    status, body = letta.delete_agent(agent["id"])
    assert status == 200, body


def test_the_database_password_works_end_to_end():
    database = LettaDatabase(VARS["postgresql_port"], VARS["postgresql_db_password"])
    assert database.query("SELECT count(*) FROM alembic_version") == [(1,)]


def test_the_journal_holds_no_secret_after_every_unit_restarts(host):
    for unit in STACK_UNITS:
        host.run_expect([0], f"systemctl restart {unit}")
    Letta(VARS["letta_port"]).wait_healthy()
    wait_for(f"http://127.0.0.1:{VARS['livekit_port']}/")
    wait_for(f"http://127.0.0.1:{VARS['livekit_agents_health_port']}/")
    # Every field of every entry, _CMDLINE included.
    journal = host.run("journalctl --no-pager -o verbose").stdout
    assert "_SYSTEMD_UNIT=letta.service" in journal and "_SYSTEMD_UNIT=livekit-agent.service" in journal
    # livekit-server logs the API key (the public half of the pair, which every
    # access token names in its `iss` claim) when it assigns a job: by design.
    assert "livekit.agents" in journal
    assert leaks(journal, {k: v for k, v in NEEDLES.items() if not k.startswith("livekit_api_key ")}) == []


def test_no_file_an_unprivileged_user_can_read_holds_a_secret(host):
    # A world-readable canary proves the search reads what nobody can read.
    canary = "leak-hunt-canary-3f9b2c"
    host.run_expect([0], f"echo {canary} > /var/tmp/leak-hunt-canary && chmod 0644 /var/tmp/leak-hunt-canary")
    patterns = "\n".join([*NEEDLES.values(), canary]) + "\n"
    run_playbook("leak-patterns.yml", extra_vars=[{"leak_patterns": patterns}])
    # grep runs as nobody and reads the patterns from stdin, which root opened.
    found = host.run("runuser -u nobody -- grep -rlsF -f - /etc /opt /var /usr /home /srv /tmp /run "
                     "< /root/leak-patterns")
    host.run_expect([0], "rm -f /root/leak-patterns /var/tmp/leak-hunt-canary")
    assert found.stdout.split() == ["/var/tmp/leak-hunt-canary"], found.stdout


@pytest.mark.parametrize("unit, limit", [("letta.service", 1.5), ("livekit-server.service", 1.5),
                                         ("livekit-agent.service", 2.0)])
def test_units_are_hardened(host, unit, limit):
    out = host.run(f"systemd-analyze security --no-pager {unit}").stdout
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert level, out[-1500:]
    assert float(level.group(1)) <= limit, out[-2500:]


def parent_of(pid):
    # The field after the command name, which may hold spaces and parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]


def box_descendant(pid, box_pid):
    while pid not in ("0", "1"):
        if pid == box_pid:
            return True
        pid = parent_of(pid)
    return False


def test_nothing_listens_beyond_loopback():
    # The box shares the runner's network namespace and has no ss: the runner
    # lists the sockets; the stack's processes are the box's (descendants of
    # its systemd-nspawn) in one of its units' cgroups.
    box_pid = (BOX_DIR / "pid").read_text().strip()
    ours = set()
    for proc in Path("/proc").iterdir():
        try:
            cgroups = (proc / "cgroup").read_text().split() if proc.name.isdigit() else []
            if any(line.endswith("/" + unit) for line in cgroups for unit in STACK_UNITS) and box_descendant(proc.name, box_pid):
                ours.add(proc.name)
        except OSError:
            continue
    assert len(ours) >= len(STACK_UNITS)
    listeners = subprocess.run(["ss", "-Hltnup"], capture_output=True, text=True, check=True).stdout.splitlines()
    stack = [line for line in listeners if any(f"pid={pid}," in line for pid in ours)]
    assert len(stack) >= 5, listeners  # PostgreSQL, Letta, LiveKit API + media, the worker's health
    beyond = [line for line in stack if not re.match(r"(127\.|\[::1\]|\[::ffff:127\.)", line.split()[4])]
    assert beyond == [], stack
