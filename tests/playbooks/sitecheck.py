"""What the tests of this folder share: inventories whose hosts nothing can
reach, a valid single-host stack, site.yml's run, the check that a refusal
contacted no host, and operator certificate files."""
import datetime
import os
import pathlib
import subprocess

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNREACHABLE = {"ansible_host": "127.0.0.1", "ansible_port": 1}
# A valid single-host stack (the layout of inventories/local).
VALID = {
    "postgresql_db_password": "Db-password-of-the-test",
    "letta_db_password": "Db-password-of-the-test",
    "livekit_api_key": "APItestkey",
    "livekit_api_secret": "s" * 40,
    "livekit_rtc_node_ip": "127.0.0.1",
    # The role pins no release's sha256 yet: every download needs the operator's.
    "livekit_archive_sha256": "0123456789abcdef" * 4,
}


def inventory(tmp_path, hosts):
    """hosts: {name: (groups, vars)}."""
    groups = {}
    for name, (member_of, host_vars) in hosts.items():
        for group in member_of:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = host_vars
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": UNREACHABLE, "children": groups}}))
    return path


def run_site(inventory_path, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    result = subprocess.run(["ansible-playbook", "-i", str(inventory_path), str(ROOT / "playbooks" / "site.yml"), *extra],
                            env=env, capture_output=True, text=True, check=False, timeout=300, cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


def one_box(tmp_path, **overrides):
    """VALID with overrides; an override of None removes the variable."""
    host_vars = {name: value for name, value in dict(VALID, **overrides).items() if value is not None}
    return inventory(tmp_path, {"box1": (["postgres", "letta", "livekit"], host_vars)})


def assert_refused_untouched(rc, out, *names):
    assert rc != 0, out
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, "a host was contacted:\n" + out
    # The failure itself: from the first fatal line to the recap (task titles
    # above it name variables too, so they do not count).
    assert "fatal: [" in out, out
    text = out[out.index("fatal: ["):].split("PLAY RECAP")[0]
    for name in names:
        assert name in text, f"{name} not named in the failure:\n{out}"


def assert_site_refuses(inventory_path, *names):
    """site.yml stops on this inventory naming each of `names`, and no host was contacted."""
    rc, out = run_site(inventory_path)
    assert_refused_untouched(rc, out, *names)


def make_certificate(directory, name, names, days=30, issuer=None, key=None):
    """A PEM certificate (CA when issuer is None and names is empty) and its key; returns (cert path, key path, key, cert)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer or (None, key)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=60)).not_valid_after(now + datetime.timedelta(days=days)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, key, certificate
