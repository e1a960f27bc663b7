"""What every scenario's tests share: the scenario's variables, running a
playbook against Molecule's inventory and reading its recap, a Letta HTTP
client, a PostgreSQL login and a few reads of the box.

Importable from every `molecule/<scenario>/tests/` because the base config
(.config/molecule/config.yml) puts this folder on the verifier's PYTHONPATH.
Clients run on the runner: the boxes share its network namespace, so a
service bound to 127.0.0.1 in a box answers on the runner's loopback.
"""
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psycopg2
import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
# The one source of a scenario's ports, versions and passwords: Molecule links
# it into the inventory, and converge, prepare and these tests read it.
# A scenario may instead hold a directory group_vars/all/ (molecule/scale: the
# example inventory's file beside the scenario's own), read as Ansible does.


def _group_vars_all():
    single = SCENARIO / "inventory" / "group_vars" / "all.yml"
    if single.exists():
        return yaml.safe_load(single.read_text())
    merged = {}
    for part in sorted((SCENARIO / "inventory" / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(part.read_text()) or {})
    return merged


VARS = _group_vars_all()
# Molecule names the scenarios' single platform so (molecule/*/molecule.yml).
BOX = "stack"
BOX_DIR = Path(os.environ["HYBRIDSTACK_CACHE"]) / "boxes" / f"{os.environ['MOLECULE_SCENARIO_NAME']}-{BOX}"

# The long-running units site.yml puts on one box.
STACK_UNITS = ["postgresql@17-main.service", "letta.service", "livekit-server.service", "livekit-agent.service"]

# python_venv's own uv, and the environment its tasks give it on the box.
UV = "/opt/python-venv-tools/bin/uv"
UV_ENV = "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_CACHE_DIR=/var/cache/python-venv/uv"


# --- playbooks ----------------------------------------------------------------

def read_recap(text, host=BOX):
    """The PLAY RECAP counts of one host (ok, changed, failed, ...) from plain output."""
    line = re.search(rf"^{re.escape(host)}\s+:\s+(ok=\d+.*)$", text, re.MULTILINE)
    assert line, text[-4000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    json_output: bool

    @property
    def output(self):
        return self.stdout + self.stderr

    @property
    def flat_output(self):
        """The output with every run of whitespace made one space: messages wrap."""
        return " ".join(self.output.split())

    @cached_property
    def report(self):
        """The ansible.posix.json callback's document (json_output=True only)."""
        assert self.json_output, "run the playbook with json_output=True"
        return json.loads(self.stdout)

    @property
    def recap(self):
        if self.json_output:
            return self.report["stats"][BOX]
        return read_recap(self.stdout)

    def task_results(self, task_name=None):
        """Every host's result of every task (or of the task so named, a role's with or without its prefix)."""
        def named(name):
            return task_name is None or name == task_name or name.endswith(" : " + task_name)
        return [result for play in self.report["plays"] for task in play["tasks"]
                if named(task["task"]["name"]) for result in task["hosts"].values()]

    def tail(self, chars=4000):
        return self.output[-chars:]


def run_playbook(playbook, *args, extra_vars=(), operator_config=False, json_output=False, timeout=1200):
    """ansible-playbook from the runner against Molecule's inventory.

    playbook: a path, relative ones in the scenario's folder. Each of extra_vars
    is one `-e` JSON document. operator_config runs with the project's
    ansible.cfg, as an operator would, rather than Molecule's.
    json_output replaces the screen output with one JSON document.
    """
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    if operator_config:
        # The operator's settings check host keys: this box's is in the file scripts/box wrote.
        env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
        env["ANSIBLE_SSH_COMMON_ARGS"] = f"-o UserKnownHostsFile={BOX_DIR / 'known_hosts'}"
    if json_output:
        # No callback besides the JSON one may write to stdout.
        env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / playbook), *args]
    for document in extra_vars:
        command += ["-e", json.dumps(document)]
    result = subprocess.run(command, cwd=SCENARIO, env=env, capture_output=True, text=True, check=False,
                            timeout=timeout)
    return PlaybookRun(result.returncode, result.stdout, result.stderr, json_output)


def project_playbook(name):
    """A playbook the collection ships (playbooks/<name>)."""
    return PROJECT / "playbooks" / name


# --- HTTP ---------------------------------------------------------------------

def http(method, url, body=None, timeout=60, headers=None):
    """(status, body): JSON bodies parsed, others as text; status None when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError as exc:
        return None, str(exc)
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text or "null")
    except ValueError:
        return status, text


def wait_for(url, expected=200, seconds=60, interval=1):
    """Poll GET url until it answers `expected`; returns the body."""
    deadline = time.monotonic() + seconds
    status, body = None, None
    while time.monotonic() < deadline:
        status, body = http("GET", url, timeout=5)
        if status == expected:
            return body
        time.sleep(interval)
    raise AssertionError(f"{url} did not answer {expected} within {seconds} s: {status} {body}")


# --- Letta --------------------------------------------------------------------

class Letta:
    """Letta's REST API the way a client uses it."""

    def __init__(self, port, address="127.0.0.1", password=None):
        self.url = f"http://{address}:{port}"
        # Secure mode: every route but the health check wants the password as a bearer token.
        self.headers = {"Authorization": f"Bearer {password}"} if password else {}

    def wait_healthy(self, seconds=180):
        return wait_for(self.url + "/v1/health/", seconds=seconds)

    def create_agent(self, name, **fields):
        """POST an agent that needs no model provider (roles/letta/files/offline-agent.json), with `fields` added."""
        body = json.loads((PROJECT / "roles" / "letta" / "files" / "offline-agent.json").read_text())
        return http("POST", self.url + "/v1/agents/", dict(body, name=name, **fields), headers=self.headers)

    def agents(self):
        return http("GET", self.url + "/v1/agents/", headers=self.headers)

    def messages(self, agent_id):
        return http("GET", f"{self.url}/v1/agents/{agent_id}/messages", headers=self.headers)

    def agent(self, agent_id):
        return http("GET", f"{self.url}/v1/agents/{agent_id}", headers=self.headers)

    def delete_agent(self, agent_id):
        return http("DELETE", f"{self.url}/v1/agents/{agent_id}", headers=self.headers)

    def snapshot(self):
        """Every agent's name, memory blocks and messages as the API reads them back, by agent id."""
        status, agents = self.agents()
        assert status == 200, agents
        shot = {}
        for listed in agents:
            status, agent = self.agent(listed["id"])
            assert status == 200, agent
            status, messages = self.messages(agent["id"])
            assert status == 200, messages
            blocks = agent.get("memory", {}).get("blocks") or agent.get("blocks") or []
            shot[agent["id"]] = {
                "name": agent["name"],
                "blocks": sorted((block["label"], block["value"]) for block in blocks),
                "messages": [(message["id"], message.get("message_type"),
                              json.dumps(message.get("content"), sort_keys=True)) for message in messages],
            }
        return shot


# --- PostgreSQL ---------------------------------------------------------------

class LettaDatabase:
    """The letta database over TCP, logged in as the letta role."""

    def __init__(self, port, password):
        self.port, self.password = port, password

    def connect(self, password=None):
        return psycopg2.connect(host="127.0.0.1", port=self.port, dbname="letta", user="letta",
                                password=self.password if password is None else password, connect_timeout=10)

    def query(self, sql, args=()):
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()


# --- the box ------------------------------------------------------------------

def restart_box(name=None):
    """Power a box off and boot the same tree (scripts/box restart); returns, once
    SSH answers again, what the script said on stderr (whether it had to kill).
    name: the box as scripts/box names it, this scenario's by default."""
    name = name or BOX_DIR.name
    result = subprocess.run([str(PROJECT / "scripts" / "box"), "restart", name],
                            capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    answer = subprocess.run([str(PROJECT / "scripts" / "box"), "ssh", name, "true"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert answer.returncode == 0, f"box {name} restarted but SSH does not answer: {answer.stderr}"
    return result.stderr


def boot_id(host):
    return host.file("/proc/sys/kernel/random/boot_id").content_string.strip()


def unit_property(host, unit, name):
    return host.run(f"systemctl show -p {name} --value {unit}").stdout.strip()


def exposure(host, unit):
    """systemd-analyze security's overall exposure level of a unit (0 safest, 10 unsandboxed)."""
    out = host.run(f"systemd-analyze security --no-pager {unit}").stdout
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert level, out[-1500:]
    return float(level.group(1))


# systemd's catalog id of "Started <unit>" (one per successful start job).
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


def journal_cursor(host):
    """Where the box's journal ends now."""
    out = host.check_output("journalctl -q -n 0 --show-cursor")
    return re.search(r"-- cursor: (\S+)", out).group(1)


def unit_starts_since(host, unit, cursor):
    """How many times systemd started `unit` after `cursor`."""
    out = host.check_output("journalctl -q -o json --after-cursor='%s' UNIT=%s MESSAGE_ID=%s"
                            % (cursor, unit, UNIT_STARTED))
    return len([line for line in out.splitlines() if line.strip()])


def venv_distributions(host, venv):
    """The normalised names of every distribution installed in a venv on the box."""
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps(sorted({d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()})))")
    result = host.run(f"{venv}/bin/python -c \"{script}\"")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)
