"""Bad input is refused by site.yml, naming the variable, before any host is contacted.

Every host of these inventories points at a loopback port where nothing
listens. A host that was contacted shows up as UNREACHABLE, so a run that
fails without that word changed no host: the refusal came from the
validation pass, which reads variables only.
"""
import pathlib

import pytest
import yaml
from sitecheck import ROOT, UNREACHABLE, VALID, assert_refused_untouched, assert_site_refuses, inventory, make_certificate, one_box, run_site


def test_the_valid_baseline_passes_validation(tmp_path):
    rc, out = run_site(one_box(tmp_path))
    # Validation passed, so the play went on to the host, which does not answer.
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_a_host_in_a_group_of_the_operators_own_passes_validation(tmp_path):
    path = inventory(tmp_path, {"box1": (["postgres", "letta", "livekit", "restore_target"], VALID)})
    rc, out = run_site(path)
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


BAD_INPUT = {
    "letta port below 1024": ({"letta_port": 80}, ["letta_port"]),
    "letta port above 65535": ({"letta_port": 70000}, ["letta_port"]),
    "letta port taken by livekit on the same host": ({"letta_port": 7880}, ["letta_port", "livekit_port"]),
    "postgresql port below 1024": ({"postgresql_port": 80}, ["postgresql_port"]),
    "postgresql port taken by letta on the same host": ({"postgresql_port": 8283}, ["postgresql_port", "letta_port"]),
    "postgresql listen address not an address": ({"postgresql_listen_addresses": ["db.example"]},
                                                 ["postgresql_listen_addresses"]),
    "postgresql identifier": ({"postgresql_db_name": "Letta DB"}, ["postgresql_db_name"]),
    "postgresql role identifier": ({"postgresql_db_user": "letta;drop"}, ["postgresql_db_user"]),
    "postgresql CIDR": ({"postgresql_hba_client_networks": ["10.0.0.0/33"]}, ["postgresql_hba_client_networks"]),
    "postgresql password placeholder": ({"postgresql_db_password": "changeme"}, ["postgresql_db_password"]),
    "letta password with whitespace": ({"letta_db_password": "two words"}, ["letta_db_password"]),
    "letta encryption key too short": ({"letta_encryption_key": "Short-key-42"}, ["letta_encryption_key"]),
    "letta encryption key placeholder": ({"letta_encryption_key": "changeme"}, ["letta_encryption_key"]),
    "letta password its URI cannot carry": ({"letta_db_password": "Rotated+to/this="}, ["letta_db_password"]),
    "letta short server password": ({"letta_server_password": "short"}, ["letta_server_password"]),
    "letta env name": ({"letta_environment": {"BAD-NAME": "x"}}, ["letta_environment"]),
    "letta env switches secure mode": ({"letta_environment": {"LETTA_SERVER_SECURE": "false"}},
                                       ["letta_environment", "LETTA_SERVER_SECURE"]),
    "letta env redirects the database": ({"letta_environment": {"LETTA_PG_URI": "postgresql://a:b@c/d"}},
                                         ["letta_environment", "LETTA_PG_URI"]),
    "letta not a server release": ({"letta_version": "0.34.1"}, ["letta_version"]),
    "letta provider key placeholder": ({"letta_openai_api_key": "sk-..."}, ["letta_openai_api_key", "OPENAI_API_KEY"]),
    "letta provider key too short": ({"letta_anthropic_api_key": "Short-key-7"}, ["letta_anthropic_api_key"]),
    "letta exposed without password": ({"letta_host": "0.0.0.0"}, ["letta_host", "letta_server_password"]),
    "livekit short secret": ({"livekit_api_secret": "too-short"}, ["livekit_api_secret"]),
    "livekit sha256 format": ({"livekit_archive_sha256": "abc123"}, ["livekit_archive_sha256"]),
    "livekit plain http download without sha256": (
        {"livekit_download_base_url": "http://mirror.example.test/livekit", "livekit_archive_sha256": None},
        ["livekit_download_base_url", "livekit_archive_sha256", "http://"]),
    "livekit download of an unpinned version without sha256": (
        {"livekit_version": "9.9.9", "livekit_archive_sha256": None},
        ["livekit_archive_sha256", "9.9.9"]),
    "livekit external ip without stun": ({"livekit_rtc_use_external_ip": True, "livekit_rtc_node_ip": ""},
                                         ["livekit_rtc_stun_servers"]),
    "livekit turn without domain": ({"livekit_turn_enabled": True}, ["livekit_turn_domain"]),
    "livekit ports overlap": ({"livekit_rtc_tcp_port": 7880}, ["livekit_rtc_tcp_port"]),
    "agent worker url": ({"livekit_agents_worker_enabled": True, "livekit_agents_script_content": "pass",
                          "livekit_agents_api_key": "APItestkey", "livekit_agents_api_secret": "s" * 40,
                          "livekit_agents_url": "http://127.0.0.1:7880"}, ["livekit_agents_url"]),
    "agent worker short secret": ({"livekit_agents_worker_enabled": True, "livekit_agents_script_content": "pass",
                                   "livekit_agents_api_key": "APItestkey", "livekit_agents_api_secret": "short"},
                                  ["livekit_agents_api_secret"]),
    "backup schedule not OnCalendar": ({"postgresql_backup_full_schedule": "Sun *-*-* 25:00"},
                                       ["postgresql_backup_full_schedule"]),
    "backup schedule that never elapses": ({"postgresql_backup_diff_schedule": "2020-01-01"},
                                           ["postgresql_backup_diff_schedule", "never"]),
    "backup to s3 without credentials": ({"postgresql_backup_repo_type": "s3", "postgresql_backup_s3_bucket": "b",
                                          "postgresql_backup_s3_endpoint": "s3.test", "postgresql_backup_s3_region": "r"},
                                         ["postgresql_backup_s3_key", "postgresql_backup_s3_key_secret"]),
    "backup repository host without certificates": ({"postgresql_backup_repo_type": "tls",
                                                     "postgresql_backup_repo_host": "10.0.0.9"},
                                                    ["postgresql_backup_tls_ca_cert", "postgresql_backup_tls_client_key"]),
    "backup repository type unknown": ({"postgresql_backup_repo_type": "ftp"}, ["postgresql_backup_repo_type"]),
    "backup to s3 without a cipher pass": ({"postgresql_backup_repo_type": "s3", "postgresql_backup_s3_bucket": "b",
                                            "postgresql_backup_s3_endpoint": "s3.test", "postgresql_backup_s3_region": "r",
                                            "postgresql_backup_s3_key": "AKIATEST", "postgresql_backup_s3_key_secret": "k" * 30},
                                           ["postgresql_backup_cipher_pass", "postgresql_backup_allow_unencrypted"]),
    "backup to a repository host without a cipher pass": (
        {"postgresql_backup_repo_type": "tls", "postgresql_backup_repo_host": "10.0.0.9",
         "postgresql_backup_tls_ca_cert": "ca", "postgresql_backup_tls_client_cert": "cert",
         "postgresql_backup_tls_client_key": "key"},
        ["postgresql_backup_cipher_pass", "postgresql_backup_allow_unencrypted"]),
    "backup to s3 with certificate checks off": (
        {"postgresql_backup_repo_type": "s3", "postgresql_backup_s3_bucket": "b", "postgresql_backup_s3_endpoint": "s3.test",
         "postgresql_backup_s3_region": "r", "postgresql_backup_s3_key": "AKIATEST", "postgresql_backup_s3_key_secret": "k" * 30,
         "postgresql_backup_cipher_pass": "Cipher-pass-of-the-test-0123", "postgresql_backup_s3_verify_tls": False},
        ["postgresql_backup_s3_verify_tls", "postgresql_backup_s3_allow_unverified_tls"]),
    "backup stanza name": ({"postgresql_backup_stanza": "two words"}, ["postgresql_backup_stanza"]),
    "backup retention zero": ({"postgresql_backup_retention_full": 0}, ["postgresql_backup_retention_full"]),
    "postgresql remote clients without server names": (
        {"postgresql_hba_client_networks": ["10.0.0.0/24"]}, ["postgresql_tls_server_names"]),
    "postgresql server name not a host name": ({"postgresql_hba_client_networks": ["10.0.0.0/24"],
                                                "postgresql_tls_server_names": ["db example"]},
                                               ["postgresql_tls_server_names", "db example"]),
    "postgresql certificate without its key and CA": ({"postgresql_tls_cert_file": "/nonexistent/server.crt"},
                                                      ["postgresql_tls_key_file", "postgresql_tls_ca_file"]),
    "postgresql certificate lifetime under the renewal margin": ({"postgresql_tls_cert_days": 20},
                                                                 ["postgresql_tls_cert_days"]),
    "letta remote database URI without verify-full": (
        {"letta_db_password": None, "letta_database_uri": "postgresql://letta:Db-password-of-the-test@db.remote.test:5432/letta"},
        ["letta_database_uri", "sslmode=verify-full"]),
    "letta URI with a weaker sslmode": (
        {"letta_db_password": None, "letta_database_uri": "postgresql://letta:Db-password-of-the-test@db.remote.test:5432/letta?sslmode=require"},
        ["letta_database_uri", "sslmode=verify-full"]),
    "letta URI with sslrootcert asyncpg refuses": (
        {"letta_db_password": None,
         "letta_database_uri": "postgresql://letta:Db-password-of-the-test@db.remote.test:5432/letta"
                               "?sslmode=verify-full&sslrootcert=/etc/ca.crt"},
        ["letta_database_uri", "sslrootcert"]),
    "letta remote database no host can vouch for": ({"letta_db_host": "db.remote.test"},
                                                    ["db.remote.test", "letta_db_ca_cert", "postgresql_tls_server_names"]),
    "letta database CA not a certificate": ({"letta_db_host": "db.remote.test", "letta_db_ca_cert": "not a certificate"},
                                            ["letta_db_ca_cert"]),
    "agent worker without the password of a secure letta": (
        {"letta_server_password": "Server-password-of-the-test", "livekit_agents_worker_enabled": True,
         "livekit_agents_script_content": "pass", "livekit_agents_api_key": "APItestkey",
         "livekit_agents_api_secret": "s" * 40, "livekit_agents_letta_base_url": "http://127.0.0.1:8283"},
        ["livekit_agents_letta_password", "401"]),
    "agent worker with another password than letta's": (
        {"letta_server_password": "Server-password-of-the-test", "livekit_agents_worker_enabled": True,
         "livekit_agents_script_content": "pass", "livekit_agents_api_key": "APItestkey",
         "livekit_agents_api_secret": "s" * 40, "livekit_agents_letta_base_url": "http://127.0.0.1:8283",
         "livekit_agents_letta_password": "Some-other-password-here"},
        ["livekit_agents_letta_password"]),
    "agent health port taken by letta": ({"livekit_agents_worker_enabled": True, "livekit_agents_script_content": "pass",
                                          "livekit_agents_api_key": "APItestkey", "livekit_agents_api_secret": "s" * 40,
                                          "livekit_agents_health_port": 8283},
                                         ["livekit_agents_health_port", "letta_port"]),
}


# The opt-outs, set as documented: validation passes and the run goes on to the host.
ACCEPTED_OPT_OUTS = {
    "unencrypted s3 with the opt-out": {
        "postgresql_backup_repo_type": "s3", "postgresql_backup_s3_bucket": "b", "postgresql_backup_s3_endpoint": "s3.test",
        "postgresql_backup_s3_region": "r", "postgresql_backup_s3_key": "AKIATEST", "postgresql_backup_s3_key_secret": "k" * 30,
        "postgresql_backup_allow_unencrypted": True},
    "unverified s3 with the opt-out": {
        "postgresql_backup_repo_type": "s3", "postgresql_backup_s3_bucket": "b", "postgresql_backup_s3_endpoint": "s3.test",
        "postgresql_backup_s3_region": "r", "postgresql_backup_s3_key": "AKIATEST", "postgresql_backup_s3_key_secret": "k" * 30,
        "postgresql_backup_cipher_pass": "Cipher-pass-of-the-test-0123", "postgresql_backup_s3_verify_tls": False,
        "postgresql_backup_s3_allow_unverified_tls": True},
    "plain http mirror with the operator's sha256": {"livekit_download_base_url": "http://mirror.example.test/livekit"},
}


@pytest.mark.parametrize("case", sorted(ACCEPTED_OPT_OUTS))
def test_a_documented_opt_out_passes_validation(tmp_path, case):
    rc, out = run_site(one_box(tmp_path, **ACCEPTED_OPT_OUTS[case]))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


@pytest.mark.parametrize("name", ["postgresql_backup_enabled", "livekit_agents_worker_enabled", "redis_appendonly",
                                  "letta_backup_before_migration", "postgresql_backup_restore_force"])
@pytest.mark.parametrize("spelled", ["false", "False", "no", "0"])
def test_a_boolean_typed_on_the_command_line_works_as_the_boolean_it_spells(tmp_path, name, spelled):
    """-e name=false is the string 'false': validation reads it as false and goes on to the host."""
    rc, out = run_site(one_box(tmp_path), "-e", f"{name}={spelled}")
    assert "derived from value of type" not in out, out
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_a_boolean_that_spells_nothing_is_refused_naming_it(tmp_path):
    rc, out = run_site(one_box(tmp_path), "-e", "postgresql_backup_enabled=nope", "-e", "livekit_turn_enabled=maybe")
    assert_refused_untouched(rc, out, "postgresql_backup_enabled (given: nope)", "livekit_turn_enabled (given: maybe)")


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_before_any_host_is_contacted(tmp_path, case):
    overrides, names = BAD_INPUT[case]
    assert_site_refuses(one_box(tmp_path, **overrides), *names)


def test_every_mistake_of_a_role_is_named_in_one_failure(tmp_path):
    bad_key = "Placeholder key with spaces"
    rc, out = run_site(one_box(tmp_path, letta_port=80, letta_server_password="short",
                               letta_encryption_key="changeme", letta_openai_api_key=bad_key))
    assert_refused_untouched(rc, out, "letta_port", "letta_server_password", "letta_encryption_key",
                             "letta_openai_api_key", "4 checks failed")
    # The keys are secrets: a failure names them, never shows them.
    assert bad_key not in out


# A scaled layout (inventories/scaled): db1 holds the database, Redis and the
# balancer; app1 and app2 a Letta replica and a LiveKit node each.
SCALED_DB = {"postgresql_db_password": VALID["postgresql_db_password"], "redis_bind_addresses": ["127.0.0.31"],
             "redis_letta_access": True, "letta_balancer_listen_address": "127.0.0.31",
             "redis_users": [{"name": "livekit", "password": "Redis-password-of-the-test", "rules": "~* &* +@all"}]}
SCALED_APP = dict(VALID, letta_encryption_key="Encryption-key-of-the-test-0123456789", letta_db_host="127.0.0.31",
                  letta_redis_host="127.0.0.31", livekit_redis_address="127.0.0.31:6379",
                  livekit_redis_username="livekit", livekit_redis_password="Redis-password-of-the-test")


def scaled(tmp_path, db=None, app1=None, app2=None):
    """Overrides of None leave the variable out."""
    def merged(base, overrides):
        return {name: value for name, value in dict(base, **(overrides or {})).items() if value is not None}
    return inventory(tmp_path, {
        "db1": (["postgres", "redis", "letta_balancer"], merged(SCALED_DB, db)),
        "app1": (["letta", "livekit"], merged(dict(SCALED_APP, letta_host="127.0.0.32"), app1)),
        "app2": (["letta", "livekit"], merged(dict(SCALED_APP, letta_host="127.0.0.33"), app2)),
    })


SCALED_BAD_INPUT = {
    "balancer others reach in front of a passwordless letta": (
        {"db": {"letta_balancer_listen_address": "10.0.0.31"}}, ["letta_server_password", "letta_balancer_listen_address"]),
    "redis bind address a name": ({"db": {"redis_bind_addresses": ["redis.example"]}}, ["redis_bind_addresses"]),
    "redis port below 1024": ({"db": {"redis_port": 80}}, ["redis_port"]),
    "redis port taken by postgresql": ({"db": {"redis_port": 5432}}, ["redis_port", "postgresql_port"]),
    "redis client network not a CIDR": ({"db": {"redis_client_networks": ["10.0.0.0/33"]}}, ["redis_client_networks"]),
    "redis user placeholder password": ({"db": {"redis_users": [{"name": "livekit", "password": "changeme", "rules": "~*"}]}},
                                        ["redis_users"]),
    "redis user named default": ({"db": {"redis_users": [{"name": "default", "password": "Redis-password-of-the-test",
                                                          "rules": "~*"}]}}, ["redis_users", "default"]),
    "redis users with one name": ({"db": {"redis_users": [{"name": "lk", "password": "Redis-password-of-the-test", "rules": "~*"},
                                                          {"name": "lk", "password": "Redis-password-of-the-test", "rules": "~*"}]}},
                                  ["redis_users"]),
    "redis save point": ({"db": {"redis_save": ["every 5 minutes"]}}, ["redis_save"]),
    "redis maxmemory": ({"db": {"redis_maxmemory": "lots"}}, ["redis_maxmemory"]),
    "redis letta user open to every network": ({"db": {"redis_bind_addresses": ["10.0.0.5"], "redis_protected_mode": False}},
                                               ["redis_client_networks"]),
    "redis protected mode shuts out remote letta": ({"db": {"redis_bind_addresses": ["10.0.0.5"],
                                                            "redis_client_networks": ["10.0.0.0/24"]}},
                                                    ["redis_protected_mode"]),
    "balancer on a wildcard": ({"db": {"letta_balancer_listen_address": "0.0.0.0"}}, ["letta_balancer_listen_address"]),
    "balancer backend without port": ({"db": {"letta_balancer_backends": ["letta1"]}}, ["letta_balancer_backends"]),
    "balancer timeout not a duration": ({"db": {"letta_balancer_fail_timeout": "ten seconds"}}, ["letta_balancer_fail_timeout"]),
    "balancer max fails zero": ({"db": {"letta_balancer_max_fails": 0}}, ["letta_balancer_max_fails"]),
    "balancer port taken by postgresql": ({"db": {"letta_balancer_port": 5432}}, ["letta_balancer_port", "postgresql_port"]),
    "livekit redis address without port": ({"app1": {"livekit_redis_address": "127.0.0.31"}}, ["livekit_redis_address"]),
    "livekit redis user without password": ({"app1": {"livekit_redis_password": ""}}, ["livekit_redis_password"]),
    "livekit redis db": ({"app1": {"livekit_redis_db": 99}}, ["livekit_redis_db"]),
    "letta redis host": ({"app1": {"letta_redis_host": "redis host"}}, ["letta_redis_host"]),
    "letta redis port": ({"app1": {"letta_redis_port": 70000}}, ["letta_redis_port"]),
    "letta env sets the redis host": ({"app1": {"letta_environment": {"LETTA_REDIS_HOST": "10.0.0.9"}}},
                                      ["letta_environment", "LETTA_REDIS_HOST"]),
    "replicas with different encryption keys": ({"app2": {"letta_encryption_key": "Another-key-of-the-test-9876543210"}},
                                                ["letta_encryption_key", "app1", "app2"]),
    "a replica without the encryption key": ({"app2": {"letta_encryption_key": None}}, ["letta_encryption_key"]),
}


@pytest.mark.parametrize("case", sorted(SCALED_BAD_INPUT))
def test_bad_scaled_input_is_refused_before_any_host_is_contacted(tmp_path, case):
    overrides, names = SCALED_BAD_INPUT[case]
    assert_site_refuses(scaled(tmp_path, **overrides), *names)


def test_the_valid_scaled_baseline_passes_validation(tmp_path):
    rc, out = run_site(scaled(tmp_path))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_the_scaled_example_inventory_passes_validation():
    secrets = {"postgresql_db_password": "Db-password-of-the-test", "letta_db_password": "Db-password-of-the-test",
               "letta_server_password": "Server-password-of-the-test", "livekit_api_key": "APItestkey",
               "letta_encryption_key": "Encryption-key-of-the-test-0123456789",
               "redis_livekit_password": "Redis-password-of-the-test",
               "monitoring_web_password": "Web-password-of-the-test", "exporters_redis_password": "Exporter-password-test",
               "exporters_web_password": "Exporters-password-of-the-test",
               "livekit_prometheus_password": "Metrics-password-of-the-test",
               "livekit_api_secret": "s" * 40, "livekit_archive_sha256": VALID["livekit_archive_sha256"], **UNREACHABLE}
    rc, out = run_site(ROOT / "inventories" / "scaled" / "hosts.yml", "-e", yaml.safe_dump(secrets, default_flow_style=True))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


@pytest.mark.parametrize("case", ["valid", "expired", "other key", "name not covered", "other CA"])
def test_operator_certificate_files_are_checked_before_any_host_is_contacted(tmp_path, case):
    ca_cert, _ca_key_path, ca_key, ca = make_certificate(tmp_path, "ca", [], days=3650)
    other_ca_cert, _other_key_path, other_ca_key, other_ca = make_certificate(tmp_path, "other-ca", [], days=3650)
    issuer = (other_ca, other_ca_key) if case == "other CA" else (ca, ca_key)
    names = ["elsewhere.test"] if case == "name not covered" else ["db.remote.test"]
    cert, key, _server_key, _server = make_certificate(tmp_path, "server", names, days=-1 if case == "expired" else 90, issuer=issuer)
    if case == "other key":
        _unrelated_cert, key, _unrelated_key, _unrelated = make_certificate(tmp_path, "unrelated", ["db.remote.test"], issuer=(ca, ca_key))
    rc, out = run_site(one_box(tmp_path, postgresql_hba_client_networks=["10.0.0.0/24"],
                               postgresql_tls_server_names=["db.remote.test"], postgresql_tls_cert_file=str(cert),
                               postgresql_tls_key_file=str(key), postgresql_tls_ca_file=str(ca_cert)))
    if case == "valid":
        assert "UNREACHABLE" in out or "unreachable=1" in out, out
        return
    expected = {"expired": "expired", "other key": "does not match the key", "name not covered": "does not cover db.remote.test",
                "other CA": "was not issued by the CA"}[case]
    assert_refused_untouched(rc, out, "postgresql_tls_cert_file", expected)


def test_an_offline_archive_with_its_checksums_passes_validation(tmp_path):
    """No livekit_archive_sha256: the checksums.txt beside the archive on the controller is the operator's own."""
    archive = tmp_path / "livekit_1.13.5_linux_amd64.tar.gz"
    archive.write_bytes(b"an archive")
    (tmp_path / "checksums.txt").write_text("0" * 64 + "  " + archive.name + "\n")
    rc, out = run_site(one_box(tmp_path, livekit_archive_sha256=None, livekit_archive_src=str(archive),
                               livekit_download_base_url="http://mirror.example.test/livekit"))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_a_download_without_a_known_sha256_is_refused_whatever_else_is_valid(tmp_path):
    """The role's defaults (upstream's https URL, its pinned version) with no livekit_archive_sha256."""
    rc, out = run_site(one_box(tmp_path, livekit_archive_sha256=None))
    version = yaml.safe_load((ROOT / "roles" / "livekit" / "defaults" / "main.yml").read_text())["livekit_version"]
    pinned = yaml.safe_load((ROOT / "roles" / "livekit" / "vars" / "main.yml").read_text())["_livekit_release_sha256"]
    if version in pinned:
        assert "UNREACHABLE" in out or "unreachable=1" in out, out
    else:
        assert_refused_untouched(rc, out, "livekit_archive_sha256", version)


def test_unpinned_agents_lock_is_refused(tmp_path):
    lock = tmp_path / "agents-lock.txt"
    lock.write_text("livekit-agents>=1.0\n")
    rc, out = run_site(one_box(tmp_path, livekit_agents_lock_file=str(lock)))
    assert_refused_untouched(rc, out, "livekit_agents_lock_file")


def test_a_bad_value_on_one_host_stops_every_host(tmp_path):
    # db1 alone is wrong; app1 and media1 are valid and must not be contacted either.
    hosts = {
        "db1": (["postgres"], {"postgresql_db_password": VALID["postgresql_db_password"], "postgresql_port": 80}),
        "app1": (["letta"], {"letta_db_password": VALID["letta_db_password"], "letta_db_host": "127.0.0.1"}),
        "media1": (["livekit"], {k: VALID[k] for k in ("livekit_api_key", "livekit_api_secret", "livekit_rtc_node_ip",
                                                       "livekit_archive_sha256")}),
    }
    rc, out = run_site(inventory(tmp_path, hosts))
    assert_refused_untouched(rc, out, "postgresql_port")


def test_the_example_inventory_passes_validation():
    # Secrets as an operator's vault would give them; every connection goes to
    # the closed loopback port, so nothing leaves this machine.
    secrets = {"postgresql_db_password": "Db-password-of-the-test", "letta_db_password": "Db-password-of-the-test",
               "letta_server_password": "Server-password-of-the-test", "livekit_api_key": "APItestkey",
               "letta_encryption_key": "Encryption-key-of-the-test-0123456789",
               "monitoring_web_password": "Web-password-of-the-test",
               "exporters_web_password": "Exporters-password-of-the-test",
               "livekit_api_secret": "s" * 40, "livekit_archive_sha256": VALID["livekit_archive_sha256"], **UNREACHABLE}
    rc, out = run_site(ROOT / "inventories" / "example" / "hosts.yml", "-e", yaml.safe_dump(secrets, default_flow_style=True))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_a_host_that_is_not_debian_13_is_named_before_any_change(tmp_path):
    # This runner, reached with a local connection and in check mode (so even a
    # passing check could change nothing here).
    release = dict(line.split("=", 1) for line in pathlib.Path("/etc/os-release").read_text().split("\n") if "=" in line)
    found = f"{release['ID'].strip(chr(34)).capitalize()} {release['VERSION_ID'].strip(chr(34))}"
    local = dict(VALID, ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}")
    groups = {group: {"hosts": {"runner": local}} for group in ("postgres", "letta", "livekit")}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": groups}}))
    rc, out = run_site(path, "--check")
    flat = " ".join(out.split())
    if found == "Debian 13":
        assert "is Debian" not in flat, out
    else:
        assert rc != 0, out
        assert f"runner is {found}" in flat and "supports Debian 13 booted with systemd" in flat, out
        assert "TASK [hybridstack.letta_livekit.postgresql : Install" not in out


def _spec_string_options():
    """Every operator-facing string option (or string list option) of the roles' argument specs, with its spec."""
    options = {}
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        for entry_point in yaml.safe_load(path.read_text())["argument_specs"].values():
            for name, spec in (entry_point.get("options") or {}).items():
                kind = spec.get("elements") if spec.get("type") == "list" else spec.get("type")
                if kind in ("str", "path") and not name.startswith("common_"):
                    options[name] = spec
    return options


STRING_OPTIONS = _spec_string_options()
# May span lines by design: the agent worker's script.
MULTI_LINE = {"livekit_agents_script_content"}


def _with_trailing_newline(name, spec):
    """The option's valid value (the baseline's, else its default, else a plain word) with a newline appended."""
    value = VALID.get(name, spec.get("default"))
    if spec.get("type") == "list":
        first = (value or ["x"])[0] if isinstance(value, list) and value else "x"
        return [str(first) + "\n"]
    return (value if isinstance(value, str) and value else "x") + "\n"


@pytest.fixture(scope="module")
def every_string_with_a_trailing_newline(tmp_path_factory):
    overrides = {name: _with_trailing_newline(name, spec) for name, spec in STRING_OPTIONS.items()
                 if name not in MULTI_LINE}
    return run_site(one_box(tmp_path_factory.mktemp("newlines"), **overrides))


def test_the_table_of_string_options_is_read_from_the_argument_specs():
    assert {"livekit_api_key", "postgresql_backup_stanza", "edge_client_max_body_size", "postgresql_backup_s3_key",
            "postgresql_backup_cipher_pass", "redis_bind_addresses"} <= set(STRING_OPTIONS)


@pytest.mark.parametrize("name", sorted(set(STRING_OPTIONS) - MULTI_LINE))
def test_a_trailing_newline_is_refused_in_every_string_variable(every_string_with_a_trailing_newline, name):
    rc, out = every_string_with_a_trailing_newline
    assert_refused_untouched(rc, out, name)


@pytest.mark.parametrize("name, value", [("livekit_api_key", "APItestkey\n"), ("postgresql_backup_stanza", "letta\n"),
                                         ("letta_db_user", "letta\r")])
def test_one_line_break_alone_is_refused_naming_its_variable(tmp_path, name, value):
    rc, out = run_site(one_box(tmp_path, **{name: value}))
    assert_refused_untouched(rc, out, name)
