"""The domain rules every role shares, each defined once as a filter or test plugin."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.hybridstack.letta_livekit.plugins.filter.network import (  # noqa: E402
    probe_address, uri_host, url_host)
from ansible_collections.hybridstack.letta_livekit.plugins.test.network import loopback  # noqa: E402
from ansible_collections.hybridstack.letta_livekit.plugins.test.secrets import placeholder  # noqa: E402


@pytest.mark.parametrize("bind, probe", [("", "127.0.0.1"), ("*", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                         ("::", "::1"), ("10.0.0.5", "10.0.0.5"), ("fd00::5", "fd00::5"),
                                         (None, "127.0.0.1")])
def test_a_wildcard_is_probed_on_loopback(bind, probe):
    assert probe_address(bind) == probe


@pytest.mark.parametrize("address, host", [("10.0.0.5", "10.0.0.5"), ("::1", "[::1]"), ("[::1]", "[::1]"),
                                           ("db.example.com", "db.example.com")])
def test_an_ipv6_address_is_bracketed_in_a_url(address, host):
    assert url_host(address) == host


@pytest.mark.parametrize("uri, host", [
    ("postgresql://letta:pw@db.example.com:5432/letta?sslmode=verify-full", "db.example.com"),
    ("postgresql://letta:pw@[fd00::5]:5432/letta", "fd00::5"),
    ("postgresql://letta:pw@127.0.0.1/letta", "127.0.0.1"),
    ("postgresql:///letta", ""), ("", ""), (None, "")])
def test_the_host_of_a_database_uri(uri, host):
    assert uri_host(uri) == host


@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_loopback_addresses(address):
    assert loopback(address)


@pytest.mark.parametrize("address", ["10.0.0.1", "0.0.0.0", "::", "db.example.com", "127.0.0.1.5", "", "localhost\n"])
def test_other_addresses_are_not_loopback(address):
    assert not loopback(address)


@pytest.mark.parametrize("value", ["", "changeme", "ChangeMe", " password ", "PASS", "your_password", None])
def test_placeholders_are_recognised_whatever_their_case(value):
    assert placeholder(value)


@pytest.mark.parametrize("value", ["letta", "Db-password-of-the-test", "changeme-but-longer"])
def test_made_up_secrets_are_not_placeholders(value):
    assert not placeholder(value)


def test_a_database_uri_in_its_fields():
    from ansible_collections.hybridstack.letta_livekit.plugins.filter.network import database_uri_fields
    assert database_uri_fields("postgresql://letta:pw@[fd00::5]:5433/letta?sslmode=verify-full") == [
        "letta", "pw", "[fd00::5]", "5433", "letta", "sslmode=verify-full"]
    assert database_uri_fields("postgresql://letta:@db/letta") == ["letta", "", "db", None, "letta", None]
    for bad in ("postgresql://letta:pw@db/letta\n", "mysql://letta:pw@db/letta", "postgresql://letta@db/letta", ""):
        assert database_uri_fields(bad) == [], bad


def test_the_letta_replicas_are_the_letta_hosts_with_the_roles_defaults_where_unset():
    from ansible_collections.hybridstack.letta_livekit.plugins.filter.network import letta_endpoints
    hostvars = {"a": {"letta_host": "10.0.0.5", "letta_port": 9000}, "b": {"letta_host": "fd00::6"}, "c": {}}
    assert letta_endpoints(["a", "b", "c"], hostvars) == ["10.0.0.5:9000", "[fd00::6]:8283", "127.0.0.1:8283"]
