"""livekit + livekit_agents on a fresh box, checked the way clients see them.

Service behaviour is asked from the runner (the box shares its network):
HTTP with urllib, the room API with livekit-api. The host is read with
testinfra only for what clients cannot see (units, modes, owners).
"""
import asyncio
import json
import os
import pathlib
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml
from livekit import api

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
VARS = yaml.safe_load((SCENARIO / "vars" / "scenario.yml").read_text())
URL = f"http://127.0.0.1:{VARS['livekit_port']}"
VERSION = "1.13.5"
AGENTS_VENV = "/opt/livekit-agents/venv"
UV = "/opt/python-venv-tools/bin/uv"


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def server_pid(host):
    return host.run("systemctl show -p MainPID --value livekit-server.service").stdout.strip()


def rerun(*extra_vars, playbook="rerun.yml", options=()):
    """Run the livekit role against the converged box with -e overrides."""
    env = dict(os.environ)
    project = env.get("MOLECULE_PROJECT_DIRECTORY", str(SCENARIO.parents[1]))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", f"{project}/.collections")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "yaml"
    argv = ["ansible-playbook", "-i", env["MOLECULE_INVENTORY_FILE"], *options, str(SCENARIO / playbook)]
    for item in extra_vars:
        argv += ["-e", json.dumps(item)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)


def recap_changed(output):
    match = re.search(r"changed=(\d+)", output)
    assert match, output[-2000:]
    return int(match.group(1))


# --- the server ---------------------------------------------------------------

def test_server_unit_active_and_enabled(host):
    unit = host.service("livekit-server.service")
    assert unit.is_running
    assert unit.is_enabled
    assert host.run("systemctl show -p Restart --value livekit-server").stdout.strip() == "always"


def test_server_runs_as_its_own_user_from_the_active_version(host):
    pid = server_pid(host)
    assert pid not in ("", "0")
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "livekit"
    exe = host.run(f"readlink /proc/{pid}/exe").stdout.strip()
    assert exe == f"/opt/livekit/{VERSION}/livekit-server"
    link = host.file("/opt/livekit/current")
    assert link.is_symlink and link.linked_to == f"/opt/livekit/{VERSION}"


def test_get_root_is_200_ok():
    assert http_get(URL + "/") == (200, "OK")


def test_config_and_keys_readable_only_by_the_service_group(host):
    for path in ("/etc/livekit/livekit.yaml", "/etc/livekit/keys.yaml", "/etc/livekit/livekit.env"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "livekit", 0o640), path
    config = yaml.safe_load(host.file("/etc/livekit/livekit.yaml").content_string)
    assert VARS["livekit_api_secret"] not in host.file("/etc/livekit/livekit.yaml").content_string
    assert config["rtc"] == {
        "tcp_port": 17881, "udp_port": 17882, "use_external_ip": False, "node_ip": "127.0.0.1",
        "enable_loopback_candidate": True, "interfaces": {"includes": ["lo"]},
    }
    keys = yaml.safe_load(host.file("/etc/livekit/keys.yaml").content_string)
    assert keys == {VARS["livekit_api_key"]: VARS["livekit_api_secret"]}


def test_server_listens_on_loopback_only_for_api_and_media():
    # The box shares the runner's network namespace (and has no ss).
    listening = subprocess.run(["ss", "-Hlntu"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"127\.0\.0\.1:17880\b", listening)
    assert not re.search(r"(0\.0\.0\.0|\*|\[::\]):17880\b", listening)
    udp = [line for line in listening.splitlines() if line.startswith("udp") and ":17882 " in line]
    assert udp and all("127.0.0.1:17882" in line for line in udp), udp


def test_unit_is_hardened_and_bounded(host):
    props = host.run(
        "systemctl show -p User -p TimeoutStopUSec -p LimitNOFILE -p NoNewPrivileges -p ProtectSystem livekit-server"
    ).stdout
    assert "User=livekit" in props
    assert "TimeoutStopUSec=30s" in props
    assert "LimitNOFILE=500000" in props
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    score = host.run("systemd-analyze security livekit-server.service").stdout
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", score).group(1))
    assert level < 3.0, score.splitlines()[-1]


def test_udp_buffer_sysctls_are_configured(host):
    conf = host.file("/etc/sysctl.d/60-livekit.conf").content_string
    assert "net.core.rmem_max=16777216" in conf
    assert "net.core.wmem_max=16777216" in conf


def test_room_api_create_list_delete():
    async def scenario():
        lkapi = api.LiveKitAPI(URL, VARS["livekit_api_key"], VARS["livekit_api_secret"])
        try:
            room = await lkapi.room.create_room(api.CreateRoomRequest(name="molecule-room"))
            assert room.name == "molecule-room"
            listed = await lkapi.room.list_rooms(api.ListRoomsRequest())
            assert "molecule-room" in [r.name for r in listed.rooms]
            await lkapi.room.delete_room(api.DeleteRoomRequest(room="molecule-room"))
            listed = await lkapi.room.list_rooms(api.ListRoomsRequest())
            assert "molecule-room" not in [r.name for r in listed.rooms]
        finally:
            await lkapi.aclose()

    asyncio.run(scenario())


def test_room_api_refuses_a_wrong_secret():
    async def scenario():
        lkapi = api.LiveKitAPI(URL, VARS["livekit_api_key"], "x" * 40)
        try:
            with pytest.raises(api.TwirpError) as refused:
                await lkapi.room.list_rooms(api.ListRoomsRequest())
            return refused.value
        finally:
            await lkapi.aclose()

    error = asyncio.run(scenario())
    assert error.status == 401, error


def test_check_mode_on_the_converged_box_changes_nothing(host):
    pid_before = server_pid(host)
    result = rerun(playbook="converge.yml", options=("--check", "--diff"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert recap_changed(output) == 0, output[-3000:]
    assert server_pid(host) == pid_before


# --- refusals: nothing changes on the host -----------------------------------

def test_tampered_archive_fails_and_the_running_version_stays(host):
    pid_before = server_pid(host)
    result = rerun({"livekit_version": "1.13.4",
                    "livekit_download_base_url": "http://127.0.0.1:18900/tampered"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "did not match" in output, output[-3000:]
    assert "livekit-server 1.13.4 was NOT installed and the active version stays 1.13.5" in " ".join(output.split())
    assert not host.file("/opt/livekit/1.13.4").exists
    assert not host.file("/var/cache/livekit/livekit_1.13.4_linux_amd64.tar.gz").exists
    assert host.file("/opt/livekit/current").linked_to == f"/opt/livekit/{VERSION}"
    assert server_pid(host) == pid_before
    assert http_get(URL + "/") == (200, "OK")


def test_tampered_offline_archive_fails_before_copying(host):
    mirror = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "mirror" / "tampered" / "v1.13.4"
    pid_before = server_pid(host)
    result = rerun({"livekit_version": "1.13.4",
                    "livekit_archive_src": str(mirror / "livekit_1.13.4_linux_amd64.tar.gz")})
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    assert "checksum mismatch for" in output, output[-3000:]
    assert not host.file("/opt/livekit/1.13.4").exists
    assert not host.file("/var/cache/livekit/livekit_1.13.4_linux_amd64.tar.gz").exists
    assert server_pid(host) == pid_before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"livekit_api_secret": "too-short-secret"}, "livekit_api_secret must be at least 32 characters"),
        ({"livekit_api_key": ""}, "livekit_api_key must be a non-empty name"),
        ({"livekit_rtc_tcp_port": 17880}, "ports must be 1-65535 and distinct"),
        ({"livekit_port": 70000}, "ports must be 1-65535 and distinct"),
        ({"livekit_rtc_udp_port": 0, "livekit_rtc_port_range_start": 51100, "livekit_rtc_port_range_end": 51000},
         "start must not exceed end"),
        ({"livekit_rtc_use_external_ip": True, "livekit_rtc_node_ip": ""}, "needs"),
    ],
    ids=["short-secret", "missing-key", "overlapping-ports", "port-out-of-range", "reversed-range",
         "external-ip-without-stun"],
)
def test_bad_input_is_refused_before_any_change(host, override, message):
    config_before = host.file("/etc/livekit/livekit.yaml").sha256sum
    pid_before = server_pid(host)
    result = rerun(override)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    if message == "needs":
        message = "livekit_rtc_use_external_ip=true makes the server ask a STUN server"
    assert message in output, output[-3000:]
    assert recap_changed(output) == 0
    assert host.file("/etc/livekit/livekit.yaml").sha256sum == config_before
    assert server_pid(host) == pid_before


# --- the agents venv and worker ----------------------------------------------

def installed(host, venv):
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps(sorted({d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()})))")
    result = host.run(f"{venv}/bin/python -c \"{script}\"")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def test_agents_venv_is_pinned_and_consistent(host):
    packages = installed(host, AGENTS_VENV)
    assert {"livekit-agents", "livekit-api", "livekit-plugins-silero"} <= set(packages)
    check = host.run(f"{UV} pip check --python {AGENTS_VENV}/bin/python")
    assert check.rc == 0, check.stdout + check.stderr
    version = host.run(f"{AGENTS_VENV}/bin/python -c 'import livekit.agents as a; print(a.__version__)'")
    assert version.stdout.strip() == "1.8.9", version.stderr
    assert host.file(AGENTS_VENV).user == "root"


def test_agents_venv_has_no_letta(host):
    # The other direction (no livekit in Letta's venv) needs both venvs on one
    # box: molecule/default's test_venvs_are_isolated.
    assert [p for p in installed(host, AGENTS_VENV) if p.startswith("letta")] == []


def test_worker_unit_runs_as_its_own_user(host):
    unit = host.service("livekit-agent.service")
    assert unit.is_running
    assert unit.is_enabled
    pid = host.run("systemctl show -p MainPID --value livekit-agent.service").stdout.strip()
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "livekit-agent"
    env = host.file("/etc/livekit-agent/agent.env")
    assert (env.user, env.group, env.mode) == ("root", "livekit-agent", 0o640)
    assert f'LIVEKIT_URL="{VARS["livekit_agents_url"]}"' in env.content_string


def test_worker_health_port_answers():
    assert http_get("http://127.0.0.1:18081/") == (200, "OK")
    status, body = http_get("http://127.0.0.1:18081/worker")
    assert status == 200
    assert json.loads(body)["sdk_version"] == "1.8.9"


def test_worker_registered_with_the_server(host):
    log = host.run("journalctl -u livekit-agent.service --no-pager -o cat").stdout
    assert "registered worker" in log, log[-2000:]


# --- restarts and offline install (last: they replace the running process) --

def test_server_is_restarted_after_it_exits_0(host):
    # SIGTERM sent past systemd looks like the server's own clean exit, which is
    # how it ends on fatal errors too: Restart=always must bring it back.
    pid_before = server_pid(host)
    assert host.run("systemctl kill -s TERM livekit-server.service").rc == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = server_pid(host)
        if pid not in ("", "0", pid_before):
            try:
                if http_get(URL + "/", timeout=2) == (200, "OK"):
                    break
            except OSError:
                pass
        time.sleep(1)
    else:
        pytest.fail("livekit-server did not come back within 60 s after exiting")
    assert int(host.run("systemctl show -p NRestarts --value livekit-server").stdout) >= 1


def exe_of_server(host):
    return host.run(f"readlink /proc/{server_pid(host)}/exe").stdout.strip()


def test_offline_archive_installs_and_switching_back_is_one_variable(host):
    release = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "mirror" / "releases" / f"v{VERSION}"
    try:
        result = rerun({"livekit_archive_src": str(release / f"livekit_{VERSION}_linux_amd64.tar.gz"),
                        "livekit_install_dir": "/opt/livekit-offline"})
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert host.file("/opt/livekit-offline/current").linked_to == f"/opt/livekit-offline/{VERSION}"
        assert exe_of_server(host) == f"/opt/livekit-offline/{VERSION}/livekit-server"
        assert http_get(URL + "/") == (200, "OK")
    finally:
        back = rerun()
        host.run("rm -rf /opt/livekit-offline")
    assert back.returncode == 0, (back.stdout + back.stderr)[-3000:]
    assert exe_of_server(host) == f"/opt/livekit/{VERSION}/livekit-server"
    assert http_get(URL + "/") == (200, "OK")
