"""site.yml refuses an inventory with missing secrets before touching any host."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Every host points at a loopback port where nothing listens: had the playbook
# tried to reach one, the recap would say unreachable.
INVENTORY = """
all:
  vars:
    ansible_host: 127.0.0.1
    ansible_port: 1
  children:
    postgres: {hosts: {db1: {}}}
    letta: {hosts: {app1: {}}}
    livekit: {hosts: {media1: {livekit_api_key: APIsomething}}}
"""


def run_site(tmp_path, *extra):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    return subprocess.run(["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / "site.yml"), *extra],
                          env=env, capture_output=True, text=True, check=False, timeout=300, cwd=ROOT)


def test_every_missing_secret_is_listed_in_one_failure(tmp_path):
    result = run_site(tmp_path)
    assert result.returncode != 0
    out = result.stdout
    assert "Missing required variables" in out
    for missing in ("db1: postgresql_db_password", "app1: letta_db_password", "media1: livekit_api_secret"):
        assert missing in out, out
    assert "media1: livekit_api_key" not in out
    assert out.count("fatal: [") == 1, out
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out
    assert "TASK [hybridstack.letta_livekit." not in out, "a role started before the preflight failed"


def test_secrets_given_as_extra_vars_satisfy_the_preflight(tmp_path):
    # With every secret present the preflight passes and the first role play
    # starts, which is where the unreachable placeholder hosts stop it.
    # Values the roles' own checks accept too: the validation pass runs them.
    result = run_site(tmp_path, "-e", "postgresql_db_password=Db-password-of-the-test letta_db_password=Db-password-of-the-test"
                      " livekit_api_secret=" + "s" * 40 + " livekit_rtc_node_ip=127.0.0.1"
                      " livekit_archive_sha256=" + "0123456789abcdef" * 4)
    assert "Missing required variables" not in result.stdout
    assert "UNREACHABLE" in result.stdout or "unreachable=1" in result.stdout, result.stdout
