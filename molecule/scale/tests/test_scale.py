"""inventories/scaled on three boxes, asked the way clients ask.

`db` (127.0.0.31): PostgreSQL, Redis, the Letta balancer. `a` (127.0.0.32) and
`b` (127.0.0.33): a Letta replica, a LiveKit node and an agent worker each.
Clients that need the boxes' software (the rtc SDK, letta-client) run inside
a box; the rest asks from the runner, which shares the boxes' network.
The tests run in file order; the ones that stop or kill a service restore it.
"""
import asyncio
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time
import uuid

import pytest
import testinfra
import yaml
from livekit import api
from stacktest import (PROJECT, SCENARIO, VARS, Letta, exposure, http, project_playbook, read_recap, run_playbook,
                       unit_property, wait_for)

testinfra_hosts = ["db"]

INVENTORY = SCENARIO / "inventory"
# The example's group_vars/all.yml and the scenario's test values.
GROUP_VARS = VARS
ADDRESS = {name: yaml.safe_load((INVENTORY / "host_vars" / f"{name}.yml").read_text())["stack_address"]
           for name in ("db", "a", "b")}
KEY, SECRET = GROUP_VARS["livekit_api_key"], GROUP_VARS["livekit_api_secret"]
PASSWORD = GROUP_VARS["letta_server_password"]
BALANCER = Letta(GROUP_VARS["stack_letta_port"], address=ADDRESS["db"], password=PASSWORD)
REPLICAS = {name: Letta(GROUP_VARS["stack_letta_port"], address=ADDRESS[name], password=PASSWORD) for name in ("a", "b")}
LIVEKIT_PORT = 7880
AGENTS_PYTHON = "/opt/livekit-agents/venv/bin/python"
LETTA_PYTHON = "/opt/letta/current/venv/bin/python"
SHARED = PROJECT / "molecule" / "_shared"
SHARED_IMPORTS = {"rtc_audio.py": ["rtc_tone.py"]}
AGENT_NAME = yaml.safe_load((PROJECT / "inventories" / "scaled" / "group_vars" / "livekit.yml").read_text())[
    "livekit_agents_environment"]["AGENT_NAME"]
# What earlier tests made, for the later ones (the tests run in file order).
CREATED_AGENTS = []
CROSS_NODE_ROOMS = []


def box(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def livekit_http(name):
    return f"http://{ADDRESS[name]}:{LIVEKIT_PORT}"


def livekit_ws(name):
    return f"ws://{name}.scale.test:{LIVEKIT_PORT}"


def run_in_box(name, script, spec, timeout=120):
    """A script of files/ run by `python` inside box `name`, the JSON spec on stdin; its JSON answer."""
    host = box(name)
    remote = f"/root/{script}"
    # Beside the script, the molecule/_shared modules it imports.
    for source in [SCENARIO / "files" / script, *(SHARED / module for module in SHARED_IMPORTS.get(script, []))]:
        host.run(f"cat > /root/{source.name} <<'SCRIPT'\n{source.read_text()}\nSCRIPT")
    python = AGENTS_PYTHON if script == "rtc_audio.py" else LETTA_PYTHON
    result = host.run(f"timeout {timeout} {python} {remote} <<'SPEC'\n{json.dumps(spec)}\nSPEC")
    assert result.rc == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def livekit(name, action):
    async def call():
        lkapi = api.LiveKitAPI(livekit_http(name), KEY, SECRET)
        try:
            return await action(lkapi)
        finally:
            await lkapi.aclose()
    return asyncio.run(call())


def redis_as_livekit(*command, raw=True):
    """A command as LiveKit's Redis user (the password from the environment, not the command line).
    raw=False quotes binary values (LiveKit's protobuf records) as escaped text."""
    password = GROUP_VARS["redis_livekit_password"]
    args = " ".join(f"'{part}'" for part in command)
    mode = "--raw" if raw else "--no-raw"
    result = box("db").run(f"REDISCLI_AUTH='{password}' redis-cli --user livekit -h {ADDRESS['db']} {mode} {args}")
    return result.stdout + result.stderr


def redis_as_letta(*command):
    """A command as Letta connects: no user, no password."""
    args = " ".join(f"'{part}'" for part in command)
    return box("db").run(f"redis-cli -h {ADDRESS['db']} {args}").stdout.strip()


def livekit_node_ids():
    """The cluster's nodes as LiveKit registered them in Redis, by box name (their node IP)."""
    ids = {}
    for node_id in redis_as_livekit("hkeys", "nodes").split():
        record = redis_as_livekit("hget", "nodes", node_id, raw=False)
        for name in ("a", "b"):
            if ADDRESS[name] in record:
                ids[name] = node_id
    return ids


def room_node(room):
    return redis_as_livekit("hget", "room_node_map", room).strip()


def audio(room, publisher, subscriber):
    spec = {"key": KEY, "secret": SECRET, "room": room, "frames": 50,
            "publisher_url": livekit_ws(publisher), "subscriber_url": livekit_ws(subscriber)}
    return run_in_box("a", "rtc_audio.py", spec)["received"]


def wait_livekit_healthy(name, seconds=60):
    wait_for(livekit_http(name) + "/", seconds=seconds)


# --- the converge -------------------------------------------------------------

def test_check_mode_on_the_converged_hosts_changes_nothing():
    """First, before any test stops or kills a service: site.yml in check mode over the three hosts."""
    result = run_playbook(project_playbook("site.yml"), "--check", "--diff")
    assert result.rc == 0, result.tail()
    for name in ADDRESS:
        recap = read_recap(result.stdout, name)
        assert recap["failed"] == 0 and recap["changed"] == 0, (name, recap, result.tail())
    # No secret of the scenario (the monitoring host's, the exporters', LiveKit's metrics' included) in the output.
    secrets = {name: value for name, value in GROUP_VARS.items()
               if isinstance(value, str) and re.search(r"password|secret|encryption_key", name)}
    assert [name for name, value in secrets.items() if value in result.stdout + result.stderr] == []


def test_status_reports_every_node():
    run = run_playbook(project_playbook("status.yml"), json_output=True, timeout=600)
    assert run.rc == 0, run.tail()
    report = [task for play in json.loads(run.stdout)["plays"] for task in play["tasks"]
              if task["task"]["name"] == "Report every node of the stack"]
    assert report, run.tail()
    by_host = next(result["msg"] for result in report[0]["hosts"].values() if "msg" in result)
    for name, units in {"db": ["postgresql", "redis-server", "nginx"],
                        "a": ["letta", "livekit-server", "livekit-agent"],
                        "b": ["letta", "livekit-server", "livekit-agent"]}.items():
        summary = " ".join(by_host[name])
        for unit in units:
            assert unit in summary, (name, unit, by_host)
    # The monitoring host's line counts the targets the inventory implies, every one up.
    monitoring = " ".join(by_host["db"])
    assert "prometheus.service" in monitoring and "targets up" in monitoring and "DOWN" not in monitoring, by_host["db"]
    for name in ("a", "b"):
        assert "prometheus-node-exporter" in " ".join(by_host[name]), (name, by_host[name])


# --- Redis ---------------------------------------------------------------------

def test_redis_listens_on_its_own_address_only():
    # The boxes share the runner's network namespace (and have no ss): asked here.
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{GROUP_VARS['stack_redis_port']}"],
                               capture_output=True, text=True, check=True).stdout
    local_addresses = [line.split()[3] for line in listening.splitlines()]
    assert local_addresses == [f"{ADDRESS['db']}:{GROUP_VARS['stack_redis_port']}"], listening


def test_redis_acl_file_holds_no_password(host):
    acl = host.file("/etc/redis/users.acl")
    assert (acl.user, acl.group, acl.mode) == ("root", "redis", 0o640)
    assert GROUP_VARS["redis_livekit_password"] not in acl.content_string
    assert "user livekit on resetpass #" in acl.content_string
    assert GROUP_VARS["redis_livekit_password"] not in host.run("journalctl -u redis-server --no-pager").stdout


def test_letta_redis_user_is_limited_to_letta_keys_and_commands():
    assert redis_as_letta("ping") == "PONG"
    assert redis_as_letta("set", "letta_cache:scale-test", "1") == "OK"
    assert redis_as_letta("get", "letta_cache:scale-test") == "1"
    # LiveKit's data, key listing, reconfiguration and Pub/Sub are refused.
    for command in (["hgetall", "room_node_map"], ["keys", "*"], ["config", "get", "*"], ["flushall"],
                    ["get", "nodes"], ["publish", "anything", "x"], ["acl", "list"]):
        assert "NOPERM" in redis_as_letta(*command), command


def test_redis_refuses_livekit_user_with_a_wrong_password(host):
    result = host.run(f"REDISCLI_AUTH=wrong-password-0123456789 redis-cli --user livekit -h {ADDRESS['db']} ping")
    assert "WRONGPASS" in result.stdout + result.stderr


def test_redis_unit_is_hardened_and_persistent(host):
    assert unit_property(host, "redis-server.service", "ProtectSystem") == "strict"
    assert "/etc/redis" not in unit_property(host, "redis-server.service", "ReadWritePaths")
    assert host.file("/var/lib/redis/appendonlydir").is_directory
    # No client can rewrite the config the role wrote.
    assert "NOPERM" in redis_as_livekit("config", "rewrite")


@pytest.mark.parametrize("unit", ["nginx.service", "redis-server.service"])
def test_the_database_hosts_units_are_sandboxed(host, unit):
    # Debian's nginx.service alone scores 9.6, 2.7 with a root master; its
    # master runs as www-data now, keeping only the capability to bind.
    assert exposure(host, unit) <= 2.0
    assert unit_property(host, unit, "ProtectSystem") == "strict"


def test_the_balancers_nginx_master_is_unprivileged(host):
    master = unit_property(host, "nginx.service", "MainPID")
    assert host.check_output(f"ps -o user= -p {master}") == "www-data"
    assert host.check_output("grep -E '^\\s*(user|pid)\\s' /etc/nginx/nginx.conf") == "pid /run/nginx/nginx.pid;"


# --- PostgreSQL ------------------------------------------------------------------

def pg_startup_answer(source):
    """The first message PostgreSQL sends, over TLS, to a client connecting from `source`:
    'R' (authenticate) or 'E' with the error (pg_hba.conf lets other hosts in over TLS only)."""
    sock = socket.create_connection((ADDRESS["db"], 5432), timeout=10, source_address=(source, 0))
    try:
        sock.sendall(struct.pack("!II", 8, 80877103))
        if sock.recv(1) == b"S":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        payload = struct.pack("!I", 196608) + b"user\0letta\0database\0letta\0\0"
        sock.sendall(struct.pack("!I", len(payload) + 4) + payload)
        kind = sock.recv(1)
        body = sock.recv(4096)
    finally:
        sock.close()
    return kind.decode(), body.decode(errors="replace")


def test_postgresql_refuses_a_host_outside_the_client_networks():
    kind, body = pg_startup_answer(GROUP_VARS["scenario_outsider_address"])
    assert kind == "E" and "no pg_hba.conf entry" in body and GROUP_VARS["scenario_outsider_address"] in body, body
    # A replica's address is let through to the password exchange.
    kind, body = pg_startup_answer(ADDRESS["a"])
    assert kind == "R", body


# --- Letta -------------------------------------------------------------------------

def test_agent_created_through_the_balancer_is_read_back_from_each_replica():
    body = json.loads((PROJECT / "roles" / "letta" / "files" / "offline-agent.json").read_text())
    name = f"scale-{uuid.uuid4().hex[:8]}"
    created = run_in_box("a", "letta_client_probe.py", {
        "base_url": f"http://db.scale.test:{GROUP_VARS['stack_letta_port']}", "password": PASSWORD,
        "action": "create", "name": name, "agent": body})
    assert created["name"] == name
    for replica_name, replica in REPLICAS.items():
        status, agent = replica.agent(created["id"])
        assert status == 200 and agent["name"] == name, (replica_name, status, agent)
    CREATED_AGENTS.append(created["id"])


def test_letta_replicas_use_redis_for_background_streams():
    agent_id = CREATED_AGENTS[0]
    status, body = http("POST", f"{BALANCER.url}/v1/agents/{agent_id}/messages/stream",
                        {"messages": [{"role": "user", "content": "hello"}], "background": True},
                        headers=BALANCER.headers, timeout=60)
    # Without Redis Letta 0.16.8 answers 503 "Background streaming requires Redis".
    assert status == 200, (status, str(body)[:500])
    keys = redis_as_livekit("scan", "0", "match", "sse:run:*", "count", "10000")
    assert "sse:run:" in keys, keys


def test_a_replica_killed_with_sigkill_leaves_the_balancer_answering():
    agent_id = CREATED_AGENTS[0]
    a = box("a")
    restarts = int(unit_property(a, "letta.service", "NRestarts"))
    assert a.run("systemctl kill -s KILL letta.service").rc == 0
    statuses, deadline = [], time.monotonic() + 120
    replica_back = False
    while time.monotonic() < deadline:
        statuses.append(BALANCER.agent(agent_id)[0])
        if REPLICAS["a"].agent(agent_id)[0] == 200 and int(unit_property(a, "letta.service", "NRestarts")) > restarts:
            replica_back = True
            break
        time.sleep(0.5)
    assert replica_back, "systemd did not bring the killed replica back within 120 s"
    assert len(statuses) > 5, statuses
    assert set(statuses) == {200}, statuses


def test_the_migration_ran_on_exactly_one_host():
    ran_on = [name for name in ("a", "b")
              if "Letta schema migration to" in box(name).run("journalctl -b --no-pager -o cat").stdout]
    assert len(ran_on) == 1, ran_on


def test_the_replicas_share_the_encryption_key_and_redis():
    envs = [box(name).file("/etc/letta/letta.env").content_string for name in ("a", "b")]
    keys = [re.search(r"^LETTA_ENCRYPTION_KEY=(.*)$", env, re.M).group(1) for env in envs]
    assert keys[0] == keys[1]
    for env in envs:
        assert f'LETTA_REDIS_HOST="{ADDRESS["db"]}"' in env


# --- LiveKit -------------------------------------------------------------------------

def test_both_nodes_registered_in_the_cluster():
    assert sorted(livekit_node_ids()) == ["a", "b"]


def test_audio_crosses_nodes_in_a_room_created_through_node_a():
    nodes = livekit_node_ids()
    room = f"cross-{uuid.uuid4().hex[:6]}"
    livekit("a", lambda lk: lk.room.create_room(api.CreateRoomRequest(name=room, node_id=nodes["a"])))
    assert room_node(room) == nodes["a"]
    assert audio(room, publisher="a", subscriber="b") >= 50
    CROSS_NODE_ROOMS.append(room)


def test_node_b_stopped_rooms_on_node_a_keep_working_and_new_rooms_land_on_a():
    b = box("b")
    room = CROSS_NODE_ROOMS[0]
    nodes = livekit_node_ids()
    assert b.run("systemctl stop livekit-server.service").rc == 0
    try:
        deadline = time.monotonic() + 30
        while "b" in livekit_node_ids() and time.monotonic() < deadline:
            time.sleep(1)
        assert "b" not in livekit_node_ids(), "node b still registered after its stop"
        listed = livekit("a", lambda lk: lk.room.list_rooms(api.ListRoomsRequest()))
        assert room in [r.name for r in listed.rooms]
        assert audio(room, publisher="a", subscriber="a") >= 50
        new_room = f"after-{uuid.uuid4().hex[:6]}"
        livekit("a", lambda lk: lk.room.create_room(api.CreateRoomRequest(name=new_room)))
        assert room_node(new_room) == nodes["a"]
        assert audio(new_room, publisher="a", subscriber="a") >= 50
    finally:
        b.run("systemctl start livekit-server.service")
    wait_livekit_healthy("b")


# --- agent workers ----------------------------------------------------------------------

def test_both_workers_registered():
    for name in ("a", "b"):
        log = box(name).run("journalctl -u livekit-agent.service --no-pager -o cat").stdout
        assert "registered worker" in log, (name, log[-2000:])
        status, worker = http("GET", f"http://{ADDRESS[name]}:8081/worker", timeout=5)
        assert status == 200, (name, worker)


def test_an_explicit_dispatch_reaches_a_worker_whose_job_joins_the_room():
    room = f"dispatch-{uuid.uuid4().hex[:6]}"
    livekit("a", lambda lk: lk.room.create_room(api.CreateRoomRequest(name=room)))
    dispatch = livekit("b", lambda lk: lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room)))
    assert dispatch.id
    agent_seen, joined_on, deadline = False, [], time.monotonic() + 60
    while time.monotonic() < deadline and not (agent_seen and joined_on):
        participants = livekit("a", lambda lk: lk.room.list_participants(api.ListParticipantsRequest(room=room)))
        agent_seen = agent_seen or any(p.kind == api.ParticipantInfo.Kind.AGENT for p in participants.participants)
        joined_on = [name for name in ("a", "b")
                     if f"joined room {room}" in box(name).run("journalctl -u livekit-agent.service --no-pager -o cat").stdout]
        time.sleep(1)
    assert agent_seen, f"no agent participant joined {room}"
    assert len(joined_on) == 1, joined_on
