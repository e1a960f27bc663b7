"""The edge's bad input is refused by site.yml before any host is contacted.

Same method as test_bad_input.py: every host points at a loopback port where
nothing listens, so a refusal without UNREACHABLE changed no host. The
operator's certificate files are made here with `cryptography` and read by
the validation pass on the controller.
"""
import pytest
from sitecheck import VALID, assert_refused_untouched, assert_site_refuses, inventory, make_certificate, run_site

DOMAINS = {"edge_letta_domain": "letta.example.test", "edge_livekit_domain": "livekit.example.test",
           "edge_turn_domain": "turn.example.test"}
EDGE = dict(VALID, letta_server_password="Server-password-of-the-test-0123", edge_acme_email="ops@example.test",
            **DOMAINS)


def edge_box(tmp_path, **overrides):
    return inventory(tmp_path, {"box1": (["postgres", "letta", "livekit", "edge"], dict(EDGE, **overrides))})


def write_pem_pair(folder, name, not_after_days=30, names=tuple(DOMAINS.values()), key=None):
    """A self-signed certificate for `names` and its key; returns (cert path, key path)."""
    return make_certificate(folder, name, names, days=not_after_days, key=key)[:2]


def files_source(cert_path, key_path):
    return {"edge_certificate_source": "files", "edge_certificate_file": str(cert_path),
            "edge_certificate_key_file": str(key_path)}


def test_a_valid_edge_passes_validation(tmp_path):
    rc, out = run_site(edge_box(tmp_path))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


def test_valid_operator_files_pass_validation(tmp_path):
    rc, out = run_site(edge_box(tmp_path, **files_source(*write_pem_pair(tmp_path, "good"))))
    assert "UNREACHABLE" in out or "unreachable=1" in out, out


BAD_EDGE_INPUT = {
    "letta domain empty": ({"edge_letta_domain": ""}, ["edge_letta_domain"]),
    "livekit domain not a host name": ({"edge_livekit_domain": "live kit.example.test"}, ["edge_livekit_domain"]),
    "turn domain a URL": ({"edge_turn_domain": "https://turn.example.test"}, ["edge_turn_domain"]),
    "domains equal": ({"edge_livekit_domain": "letta.example.test"}, ["edge_letta_domain", "edge_livekit_domain"]),
    "acme without contact email": ({"edge_acme_email": ""}, ["edge_acme_email"]),
    "letta without server password": ({"letta_server_password": ""}, ["letta_server_password"]),
    "livekit turn on without turn domain": ({"livekit_turn_enabled": True}, ["livekit_turn_domain"]),
    "livekit turn domain not a host name": ({"livekit_turn_enabled": True, "livekit_turn_domain": "turn_example"},
                                            ["livekit_turn_domain"]),
    "livekit turn without ttl": ({"livekit_turn_enabled": True, "livekit_turn_domain": "turn.example.test",
                                  "livekit_turn_ttl_seconds": 0}, ["livekit_turn_ttl_seconds"]),
    "livekit turn peer not a CIDR": ({"livekit_turn_allow_restricted_peer_cidrs": ["10.0.0.0"]},
                                     ["livekit_turn_allow_restricted_peer_cidrs"]),
}


@pytest.mark.parametrize("case", sorted(BAD_EDGE_INPUT))
def test_bad_edge_input_is_refused_before_any_host_is_contacted(tmp_path, case):
    overrides, names = BAD_EDGE_INPUT[case]
    assert_site_refuses(edge_box(tmp_path, **overrides), *names)


def test_letta_without_password_on_another_host_is_refused(tmp_path):
    path = inventory(tmp_path, {
        "app1": (["postgres", "letta", "livekit"], VALID),
        "edge1": (["edge"], {k: v for k, v in EDGE.items() if k.startswith("edge_")}),
    })
    rc, out = run_site(path)
    assert_refused_untouched(rc, out, "letta_server_password", "app1")


def test_certificate_not_matching_its_key_is_refused(tmp_path):
    cert_path = write_pem_pair(tmp_path, "one")[0]
    other_key = write_pem_pair(tmp_path, "two")[1]
    rc, out = run_site(edge_box(tmp_path, **files_source(cert_path, other_key)))
    assert_refused_untouched(rc, out, "edge_certificate_file does not match edge_certificate_key_file")


def test_expired_certificate_is_refused(tmp_path):
    rc, out = run_site(edge_box(tmp_path, **files_source(*write_pem_pair(tmp_path, "old", not_after_days=-1))))
    assert_refused_untouched(rc, out, "edge_certificate_file has expired")


def test_certificate_missing_a_domain_is_refused(tmp_path):
    pair = write_pem_pair(tmp_path, "partial", names=("letta.example.test", "livekit.example.test"))
    rc, out = run_site(edge_box(tmp_path, **files_source(*pair)))
    assert_refused_untouched(rc, out, "does not name turn.example.test")


def test_the_edge_and_the_letta_balancer_may_share_a_host_and_its_nginx(tmp_path):
    # One nginx: the edge's main configuration includes the balancer's site (molecule/edge runs it).
    balancer = {"letta_balancer_port": 8383, "letta_balancer_backends": ["127.0.0.2:8283"]}
    path = inventory(tmp_path, {"box1": (["postgres", "letta", "livekit", "edge", "letta_balancer"],
                                         dict(EDGE, **balancer))})
    rc, out = run_site(path)
    assert "UNREACHABLE" in out or "unreachable=1" in out, out
