"""The supported Letta releases are stated once per concern, and the concerns agree.

The patch module knows which releases' message.py it was checked against; the
letta role can install a release only with its lock and its sdist checksum.
Those three lists must be the same set, and no other file may carry its own.
"""
import ast
import pathlib
import re
import shutil

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULE_UTILS = "plugins/module_utils/letta_message_patch.py"
LETTA_VARS = "roles/letta/vars/main.yml"
LETTA_LOCKS = "roles/letta/files/locks"
PATCH_DEFAULTS = "roles/letta_patch/defaults/main.yml"
PATCH_SPECS = "roles/letta_patch/meta/argument_specs.yml"
LETTA_DEFAULTS = "roles/letta/defaults/main.yml"
PLACES = [MODULE_UTILS, LETTA_VARS, LETTA_LOCKS, PATCH_DEFAULTS, PATCH_SPECS, LETTA_DEFAULTS]


def checked_releases(root):
    tree = ast.parse((root / MODULE_UTILS).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CHECKED_RELEASES" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{MODULE_UTILS}: no CHECKED_RELEASES")


def version_sources(root):
    """Each place that lists releases, with the set it lists (empty: defers to another place)."""
    patch_spec = yaml.safe_load((root / PATCH_SPECS).read_text())["argument_specs"]["main"]["options"]
    return {
        MODULE_UTILS: checked_releases(root),
        LETTA_VARS: set(yaml.safe_load((root / LETTA_VARS).read_text())["_letta_releases"]),
        LETTA_LOCKS: {re.sub(r"^letta-(.*)\.txt$", r"\1", p.name) for p in (root / LETTA_LOCKS).glob("letta-*.txt")},
        PATCH_DEFAULTS: set(yaml.safe_load((root / PATCH_DEFAULTS).read_text())["letta_patch_supported_versions"]),
        PATCH_SPECS: set(patch_spec["letta_patch_supported_versions"].get("default") or []),
    }


def disagreements(root):
    """Places whose list differs from what most places list, and a default release none supports."""
    listed = {place: frozenset(releases) for place, releases in version_sources(root).items() if releases}
    sets = list(listed.values())
    agreed = max(sets, key=sets.count)
    found = {place: sorted(releases ^ agreed) for place, releases in listed.items() if releases != agreed}
    default = yaml.safe_load((root / LETTA_DEFAULTS).read_text())["letta_version"]
    if default not in agreed:
        found[LETTA_DEFAULTS] = [default]
    return found


def test_every_place_lists_the_same_releases():
    assert disagreements(ROOT) == {}


def test_every_release_has_its_alembic_head():
    releases = yaml.safe_load((ROOT / LETTA_VARS).read_text())["_letta_releases"]
    assert all(re.fullmatch(r"[0-9a-f]{12}", facts["alembic_head"]) for facts in releases.values())
    assert all(re.fullmatch(r"[0-9a-f]{64}", facts["sdist_sha256"]) for facts in releases.values())
    assert list(releases) == sorted(releases, key=lambda release: tuple(map(int, release.split("."))))


def test_the_role_passes_its_releases_down_to_the_patch_role():
    # letta_patch lists none of its own: the letta role hands it the releases it has locks for.
    assert version_sources(ROOT)[PATCH_DEFAULTS] == set()
    assert version_sources(ROOT)[PATCH_SPECS] == set()
    tasks = "\n".join(p.read_text() for p in (ROOT / "roles/letta/tasks").glob("*.yml"))
    assert re.search(r"letta_patch_supported_versions:\s*\"\{\{\s*_letta_supported_versions\s*\}\}\"", tasks)


def test_no_other_file_types_a_list_of_releases():
    # Two or more server releases on one line or in one YAML list outside the
    # places above are a copy that will drift.
    release = r"0\.1[0-9]\.[0-9]+"
    copies = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if (not path.is_file() or rel.split("/")[0] in {".git", ".venv", ".collections", "changelogs"}
                or rel.startswith(LETTA_LOCKS) or rel in PLACES or path.suffix not in {".py", ".yml", ".yaml", ".j2"}
                or rel.startswith("tests/meta/")):
            continue
        text = path.read_text(errors="replace")
        if re.search(rf"{release}[^\n]*{release}", text) or re.search(rf"(?m)^\s*- \"?{release}\"?\s*\n\s*- \"?{release}", text):
            copies.append(rel)
    assert copies == []


def broken_copy(tmp_path, place):
    """A copy of the places with release 0.16.99 added to exactly one of them."""
    for rel in PLACES:
        src = ROOT / rel
        dst = tmp_path / rel
        if src.is_dir():
            dst.mkdir(parents=True)
            for lock in src.glob("letta-*.txt"):
                (dst / lock.name).write_text("# stand-in: only the file name is read here\n")
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    target = tmp_path / place
    if place == MODULE_UTILS:
        text = target.read_text()
        target.write_text(text.replace('CHECKED_RELEASES = (', 'CHECKED_RELEASES = ("0.16.99", ', 1))
    elif place == LETTA_VARS:
        text = target.read_text()
        target.write_text(text.replace("_letta_releases:\n", "_letta_releases:\n  0.16.99: {sdist_sha256: %s, alembic_head: %s}\n"
                                       % ("0" * 64, "0" * 12), 1))
    elif place == LETTA_LOCKS:
        (target / "letta-0.16.99.txt").write_text("letta==0.16.99\n")
    elif place == PATCH_DEFAULTS:
        data = yaml.safe_load(target.read_text())
        data["letta_patch_supported_versions"] = sorted(checked_releases(ROOT) | {"0.16.99"})
        target.write_text(yaml.safe_dump(data))
    elif place == PATCH_SPECS:
        data = yaml.safe_load(target.read_text())
        data["argument_specs"]["main"]["options"]["letta_patch_supported_versions"]["default"] = ["0.16.99"]
        target.write_text(yaml.safe_dump(data))
    elif place == LETTA_DEFAULTS:
        data = yaml.safe_load(target.read_text())
        data["letta_version"] = "0.16.99"
        target.write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.mark.parametrize("place", PLACES)
def test_a_release_added_in_one_place_only_is_caught(tmp_path, place):
    assert disagreements(ROOT) == {}, "the real tree must agree before the broken copy means anything"
    assert list(disagreements(broken_copy(tmp_path, place))) == [place]
