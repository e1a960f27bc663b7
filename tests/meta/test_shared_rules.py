"""Each domain rule is defined once, and roles read each other only through public names.

A role's `_`-prefixed variables are its own: another role or a playbook that
reads one depends on an implementation detail. The placeholder secrets, the
parsing of a database URI, "is this loopback" and "which address probes a
bind address" live in the collection's filter and test plugins.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if path.is_dir())
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))
PRIVATE = re.compile(r"(?<![A-Za-z0-9_.])_(%s)_[a-z0-9_]+" % "|".join(sorted(ROLES, key=len, reverse=True)))


def text_files(*folders):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".j2", ".py", ".sh", ".cfg", ".conf", ""):
                try:
                    yield path, path.read_text()
                except UnicodeDecodeError:
                    continue


def private_reads(text, own_role=None):
    return sorted({found.group(0) for found in PRIVATE.finditer(text) if found.group(1) != own_role})


@pytest.mark.parametrize("role", ROLES)
def test_a_role_reads_no_other_roles_private_variable(role):
    found = {str(path.relative_to(ROOT)): names for path, text in text_files(f"roles/{role}")
             if (names := private_reads(text, role))}
    assert not found, f"{role} reads other roles' private variables (publish them instead): {found}"


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda path: path.name)
def test_a_playbook_reads_no_roles_private_variable(playbook):
    assert not private_reads(playbook.read_text()), playbook.name


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda path: path.name)
def test_a_playbook_holds_no_jinja_statement(playbook):
    assert "{%" not in playbook.read_text(), f"{playbook.name}: move the logic into a role or a plugin"


def test_site_yml_reads_in_one_screen():

    assert len((ROOT / "playbooks" / "site.yml").read_text().splitlines()) <= 160


# Each rule's tell-tale, and the one file allowed to hold it.
RULES = {
    "a placeholder secret listed": (re.compile(r"^\s*-\s*['\"]?change[-_]?me['\"]?\s*$|\[[^\]]*\bchangeme\b[^\]]*,[^\]]*\]", re.M),
                                    "plugins/test/secrets.py"),
    "a database URI parsed": (re.compile(r"postgresql://\(\?P<|@\(\\\\?\["), "plugins/filter/network.py"),
    "loopback matched by pattern": (re.compile(r"127\\\\?\.\[0-9"), "plugins/test/network.py"),
    "a wildcard bind address mapped to a probe": (re.compile(r"'127\.0\.0\.1' if|else '127\.0\.0\.1'"), "plugins/filter/network.py"),
}


@pytest.mark.parametrize("rule", RULES)
def test_a_domain_rule_is_defined_once(rule):
    pattern, home = RULES[rule]
    found = [str(path.relative_to(ROOT)) for path, text in text_files("roles", "playbooks", "plugins")
             if pattern.search(text) and str(path.relative_to(ROOT)) != home]
    assert not found, f"{rule} outside {home}: {found}"
