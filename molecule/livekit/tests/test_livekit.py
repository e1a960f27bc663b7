"""livekit + livekit_agents on a fresh box, checked the way clients see them.

Service behaviour is asked from the runner (the box shares its network):
HTTP with urllib, the room API with livekit-api. The host is read with
testinfra only for what clients cannot see (units, modes, owners).
"""
import asyncio
import re
import subprocess
import time

import pytest
import yaml
from livekit import api
from stacktest import EPHEMERAL, UV, VARS, http, run_playbook, unit_property, venv_distributions

URL = f"http://127.0.0.1:{VARS['livekit_port']}"
VERSION = VARS["livekit_version"]
TAMPERED_VERSION = VARS["scenario_tampered_livekit_version"]
TAMPERED_ARCHIVE = f"livekit_{TAMPERED_VERSION}_linux_amd64.tar.gz"
MIRROR = f"http://127.0.0.1:{VARS['livekit_mirror_port']}"
AGENT_HEALTH = f"http://127.0.0.1:{VARS['livekit_agents_health_port']}"
AGENTS_VENV = "/opt/livekit-agents/venv"


def get(url):
    return http("GET", url, timeout=5)


def server_pid(host):
    return unit_property(host, "livekit-server.service", "MainPID")


def rerun(*extra_vars, playbook="rerun.yml", options=()):
    """Run the livekit role against the converged box with -e overrides."""
    return run_playbook(playbook, *options, extra_vars=extra_vars, timeout=300)


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
    assert get(URL + "/") == (200, "OK")


def test_config_and_keys_readable_only_by_the_service_group(host):
    for path in ("/etc/livekit/livekit.yaml", "/etc/livekit/keys.yaml", "/etc/livekit/livekit.env"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "livekit", 0o640), path
    config = yaml.safe_load(host.file("/etc/livekit/livekit.yaml").content_string)
    assert VARS["livekit_api_secret"] not in host.file("/etc/livekit/livekit.yaml").content_string
    assert config["rtc"] == {
        "tcp_port": VARS["livekit_rtc_tcp_port"], "udp_port": VARS["livekit_rtc_udp_port"],
        "use_external_ip": VARS["livekit_rtc_use_external_ip"], "node_ip": VARS["livekit_rtc_node_ip"],
        "enable_loopback_candidate": VARS["livekit_rtc_enable_loopback_candidate"],
        "interfaces": {"includes": VARS["livekit_rtc_interfaces"]},
    }
    keys = yaml.safe_load(host.file("/etc/livekit/keys.yaml").content_string)
    assert keys == {VARS["livekit_api_key"]: VARS["livekit_api_secret"]}


def test_server_listens_on_loopback_only_for_api_and_media():
    # The box shares the runner's network namespace (and has no ss).
    listening = subprocess.run(["ss", "-Hlntu"], capture_output=True, text=True, check=True).stdout
    api_port, udp_port = VARS["livekit_port"], VARS["livekit_rtc_udp_port"]
    assert re.search(rf"127\.0\.0\.1:{api_port}\b", listening)
    assert not re.search(rf"(0\.0\.0\.0|\*|\[::\]):{api_port}\b", listening)
    udp = [line for line in listening.splitlines() if line.startswith("udp") and f":{udp_port} " in line]
    assert udp and all(f"127.0.0.1:{udp_port}" in line for line in udp), udp


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
    assert level <= 2.0, score.splitlines()[-1]


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
    assert result.rc == 0, result.tail(3000)
    assert result.recap["changed"] == 0, result.tail(3000)
    assert server_pid(host) == pid_before


# --- refusals: nothing changes on the host -----------------------------------

def test_tampered_archive_fails_and_the_running_version_stays(host):
    pid_before = server_pid(host)
    result = rerun({"livekit_version": TAMPERED_VERSION, "livekit_download_base_url": MIRROR + "/tampered"})
    assert result.rc != 0, result.tail(3000)
    assert "did not match" in result.output, result.tail(3000)
    assert (f"livekit-server {TAMPERED_VERSION} was NOT installed and the active version stays {VERSION}"
            in result.flat_output)
    assert not host.file(f"/opt/livekit/{TAMPERED_VERSION}").exists
    assert not host.file(f"/var/cache/livekit/{TAMPERED_ARCHIVE}").exists
    assert host.file("/opt/livekit/current").linked_to == f"/opt/livekit/{VERSION}"
    assert server_pid(host) == pid_before
    assert get(URL + "/") == (200, "OK")


def test_tampered_offline_archive_fails_before_copying(host):
    mirror = EPHEMERAL / "mirror" / "tampered" / f"v{TAMPERED_VERSION}"
    pid_before = server_pid(host)
    result = rerun({"livekit_version": TAMPERED_VERSION, "livekit_archive_src": str(mirror / TAMPERED_ARCHIVE)})
    assert result.rc != 0, result.tail(3000)
    assert "checksum mismatch for" in result.flat_output, result.tail(3000)
    assert not host.file(f"/opt/livekit/{TAMPERED_VERSION}").exists
    assert not host.file(f"/var/cache/livekit/{TAMPERED_ARCHIVE}").exists
    assert server_pid(host) == pid_before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"livekit_api_secret": "too-short-secret"}, "livekit_api_secret must be at least 32 characters"),
        ({"livekit_api_key": ""}, "livekit_api_key must be a non-empty name"),
        ({"livekit_rtc_tcp_port": VARS["livekit_port"]}, "ports must be 1-65535 and distinct"),
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
    assert result.rc != 0, result.tail(3000)
    if message == "needs":
        message = "livekit_rtc_use_external_ip=true makes the server ask a STUN server"
    assert message in result.flat_output, result.tail(3000)
    assert result.recap["changed"] == 0
    assert host.file("/etc/livekit/livekit.yaml").sha256sum == config_before
    assert server_pid(host) == pid_before


# --- the agents venv and worker ----------------------------------------------

def test_agents_venv_is_pinned_and_consistent(host):
    packages = venv_distributions(host, AGENTS_VENV)
    assert {"livekit-agents", "livekit-api", "livekit-plugins-silero"} <= set(packages)
    check = host.run(f"{UV} pip check --python {AGENTS_VENV}/bin/python")
    assert check.rc == 0, check.stdout + check.stderr
    version = host.run(f"{AGENTS_VENV}/bin/python -c 'import livekit.agents as a; print(a.__version__)'")
    assert version.stdout.strip() == "1.8.9", version.stderr
    assert host.file(AGENTS_VENV).user == "root"


def test_agents_venv_has_no_letta(host):
    # The other direction (no livekit in Letta's venv) needs both venvs on one
    # box: molecule/default's test_venvs_are_isolated.
    assert [p for p in venv_distributions(host, AGENTS_VENV) if p.startswith("letta")] == []


def test_worker_unit_runs_as_its_own_user(host):
    unit = host.service("livekit-agent.service")
    assert unit.is_running
    assert unit.is_enabled
    pid = unit_property(host, "livekit-agent.service", "MainPID")
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "livekit-agent"
    env = host.file("/etc/livekit-agent/agent.env")
    assert (env.user, env.group, env.mode) == ("root", "livekit-agent", 0o640)
    # inventory/group_vars points livekit_agents_url at the server's port.
    assert f'LIVEKIT_URL="ws://127.0.0.1:{VARS["livekit_port"]}"' in env.content_string


def test_worker_health_port_answers():
    assert get(AGENT_HEALTH + "/") == (200, "OK")
    status, body = get(AGENT_HEALTH + "/worker")
    assert status == 200
    assert body["sdk_version"] == "1.8.9"


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
            if get(URL + "/") == (200, "OK"):
                break
        time.sleep(1)
    else:
        pytest.fail("livekit-server did not come back within 60 s after exiting")
    assert int(host.run("systemctl show -p NRestarts --value livekit-server").stdout) >= 1


def exe_of_server(host):
    return host.run(f"readlink /proc/{server_pid(host)}/exe").stdout.strip()


def test_offline_archive_installs_and_switching_back_is_one_variable(host):
    release = EPHEMERAL / "mirror" / "releases" / f"v{VERSION}"
    try:
        result = rerun({"livekit_archive_src": str(release / f"livekit_{VERSION}_linux_amd64.tar.gz"),
                        "livekit_install_dir": "/opt/livekit-offline"})
        assert result.rc == 0, result.tail(3000)
        assert host.file("/opt/livekit-offline/current").linked_to == f"/opt/livekit-offline/{VERSION}"
        assert exe_of_server(host) == f"/opt/livekit-offline/{VERSION}/livekit-server"
        assert get(URL + "/") == (200, "OK")
    finally:
        back = rerun()
        host.run("rm -rf /opt/livekit-offline")
    assert back.rc == 0, back.tail(3000)
    assert exe_of_server(host) == f"/opt/livekit/{VERSION}/livekit-server"
    assert get(URL + "/") == (200, "OK")


def test_an_altered_binary_is_installed_again(host):
    binary = f"/opt/livekit/{VERSION}/livekit-server"
    recorded = host.file(binary + ".sha256").content_string.strip()
    assert host.file(binary).sha256sum == recorded
    size = host.file(binary).size
    # What an interrupted unpack leaves: a shorter file under the right name
    # (unlinked first: the running server keeps its own copy).
    host.run_expect([0], f"cp {binary} /root/lk.bin && rm {binary} && head -c 1000000 /root/lk.bin > {binary}"
                         f" && chmod 0755 {binary} && rm /root/lk.bin")
    result = rerun()
    assert result.rc == 0, result.tail(3000)
    assert result.recap["changed"] >= 1
    assert host.file(binary).size == size
    assert host.file(binary).sha256sum == recorded
    assert get(URL + "/") == (200, "OK")


def test_a_disabled_worker_leaves_no_secret_behind(host):
    try:
        result = run_playbook("converge.yml", extra_vars=[{"livekit_agents_worker_enabled": False}], timeout=600)
        assert result.rc == 0, result.tail(3000)
        for path in ("/etc/livekit-agent/agent.env", "/etc/livekit-agent/agent.py",
                     "/etc/systemd/system/livekit-agent.service"):
            assert not host.file(path).exists, path
        assert host.run("systemctl is-active livekit-agent.service").stdout.strip() != "active"
    finally:
        back = run_playbook("converge.yml", timeout=600)
    assert back.rc == 0, back.tail(3000)
    assert host.file("/etc/livekit-agent/agent.env").mode == 0o640
