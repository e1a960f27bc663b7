# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/letta/files/fetch-sdist.py against this machine's package index and
the real Letta sdist, the way the letta role runs it (its own interpreter)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "letta" / "files" / "fetch-sdist.py"
SHA256 = {release: facts["sdist_sha256"]
          for release, facts in yaml.safe_load((ROOT / "roles" / "letta" / "vars" / "main.yml").read_text())["_letta_releases"].items()}
VERSION = sorted(SHA256, key=lambda v: tuple(int(p) for p in v.split(".")))[-1]


def fetch(directory, sha256=SHA256[VERSION], *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "letta", VERSION, sha256, str(directory), *extra],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    directory = tmp_path_factory.mktemp("src")
    return directory, fetch(directory)


def test_fetches_checks_and_unpacks_then_finds_nothing_to_do(fetched):
    directory, first = fetched
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("fetched http") and lines[0].endswith("/letta-%s.tar.gz" % VERSION)
    assert lines[1] == "unpacked %s/letta-%s" % (directory, VERSION)
    assert (directory / ("letta-%s" % VERSION) / "alembic.ini").is_file()
    assert oct((directory / ("letta-%s.tar.gz" % VERSION)).stat().st_mode & 0o777) == "0o644"
    assert oct((directory / ("letta-%s" % VERSION)).stat().st_mode & 0o777) == "0o755"
    # Nothing half-done is left beside them.
    assert sorted(p.name for p in directory.iterdir()) == ["letta-%s" % VERSION, "letta-%s.tar.gz" % VERSION]
    again = fetch(directory)
    assert again.returncode == 0 and again.stdout == "", again


def test_a_partial_unpack_is_replaced_whole(fetched):
    directory = fetched[0]
    (directory / ("letta-%s" % VERSION) / "alembic.ini").unlink()
    redone = fetch(directory)
    assert redone.returncode == 0 and redone.stdout.splitlines() == ["unpacked %s/letta-%s" % (directory, VERSION)], redone
    assert (directory / ("letta-%s" % VERSION) / "alembic.ini").is_file()


def test_check_mode_reads_the_index_and_writes_nothing(tmp_path):
    checked = fetch(tmp_path, SHA256[VERSION], "--check")
    assert checked.returncode == 0, checked.stderr
    assert [line.split(" ")[:2] for line in checked.stdout.splitlines()] == [["would", "fetch"], ["would", "unpack"]]
    assert list(tmp_path.iterdir()) == []


def test_a_file_with_another_checksum_is_not_kept(tmp_path):
    refused = fetch(tmp_path, "0" * 64)
    assert refused.returncode != 0
    assert "not the expected %s: not kept" % ("0" * 64) in refused.stderr
    assert SHA256[VERSION] in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_release_the_index_lacks_is_named(tmp_path):
    missing = subprocess.run([sys.executable, str(SCRIPT), "letta", "0.0.0", "0" * 64, str(tmp_path)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode != 0
    assert "letta-0.0.0.tar.gz is not listed for letta on the index" in missing.stderr
    assert list(tmp_path.iterdir()) == []
