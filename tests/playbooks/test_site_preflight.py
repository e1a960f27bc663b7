"""site.yml refuses an inventory with missing secrets before touching any host."""
from sitecheck import run_site

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


def site(tmp_path, *extra):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    return run_site(path, *extra)


def test_every_missing_secret_is_listed_in_one_failure(tmp_path):
    rc, out = site(tmp_path)
    assert rc != 0
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
    secrets = ("postgresql_db_password=Db-password-of-the-test letta_db_password=Db-password-of-the-test"
               " livekit_api_secret=" + "s" * 40 + " livekit_rtc_node_ip=127.0.0.1"
               " livekit_archive_sha256=" + "0123456789abcdef" * 4)
    rc, out = site(tmp_path, "-e", secrets)
    assert "Missing required variables" not in out
    assert "UNREACHABLE" in out or "unreachable=1" in out, out
