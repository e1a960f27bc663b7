# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/livekit/files/install-release.py with the real livekit-server release
(scripts/livekit-archive), served from loopback the way an operator's mirror
serves it, run with this interpreter as the role runs it with the host's.
The expected sha256 is always given (--sha256); the mirror's checksums.txt is
never asked for."""

import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "livekit" / "files" / "install-release.py"
VERSION = yaml.safe_load((ROOT / "roles" / "livekit" / "defaults" / "main.yml").read_text())["livekit_version"]
ARCHIVE = f"livekit_{VERSION}_linux_amd64.tar.gz"


@pytest.fixture(scope="module")
def release():
    packed = subprocess.run([str(ROOT / "scripts" / "livekit-archive"), "pack", VERSION], capture_output=True,
                            text=True, timeout=1800, check=True)
    return Path(packed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """An archive whose livekit-server, if it ever runs, leaves a marker file."""
    root = tmp_path_factory.mktemp("planted")
    marker = root / "ran"
    binary = root / "livekit-server"
    binary.write_text(f"#!/bin/sh\ntouch {marker}\necho 'livekit-server version {VERSION}'\n")
    binary.chmod(0o755)
    archive = root / ARCHIVE
    with tarfile.open(archive, "w:gz") as packing:
        packing.add(binary, arcname="livekit-server")
    return archive, marker


@pytest.fixture(scope="module")
def mirror(release, planted, tmp_path_factory):
    """Serves v<VERSION>/ (the real release), tampered/v<VERSION>/ (a changed
    archive whose checksums.txt lists the changed archive's own sha256, as a
    compromised mirror would) and planted/v<VERSION>/ (the marker archive),
    and records every path asked for."""
    root = tmp_path_factory.mktemp("mirror")
    shutil.copytree(release, root / f"v{VERSION}")
    tampered = root / "tampered" / f"v{VERSION}"
    shutil.copytree(release, tampered)
    with open(tampered / ARCHIVE, "ab") as archive:
        archive.write(b"\0")
    (tampered / "checksums.txt").write_text(f"{sha256(tampered / ARCHIVE)}  {ARCHIVE}\n")
    (root / "planted" / f"v{VERSION}").mkdir(parents=True)
    shutil.copy(planted[0], root / "planted" / f"v{VERSION}" / ARCHIVE)
    asked = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", asked=asked)
    server.shutdown()
    # No test made the helper ask the mirror for a checksums.txt.
    assert not [path for path in asked if path.endswith("checksums.txt")], asked


def install(tmp_path, *options):
    version_dir, archive = tmp_path / "opt" / VERSION, tmp_path / "cache" / ARCHIVE
    result = subprocess.run([sys.executable, str(SCRIPT), VERSION, str(version_dir), str(archive), *options],
                            capture_output=True, text=True, timeout=300, check=False)
    return result, version_dir, archive


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_downloads_verifies_unpacks_and_records_the_binary(release, mirror, tmp_path):
    result, version_dir, archive = install(tmp_path, "--url", f"{mirror.url}/v{VERSION}",
                                           "--sha256", sha256(release / ARCHIVE))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"installed {version_dir}\n"
    binary = version_dir / "livekit-server"
    assert (version_dir / "livekit-server.sha256").read_text() == sha256(binary) + "\n"
    assert oct(binary.stat().st_mode & 0o777) == "0o755"
    assert oct(version_dir.stat().st_mode & 0o777) == "0o755"
    assert VERSION in subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    # The archive is gone and nothing half-done is left beside the version directory.
    assert not archive.exists() and list(archive.parent.iterdir()) == []
    assert [p.name for p in version_dir.parent.iterdir()] == [VERSION]


def test_check_mode_reads_and_writes_nothing(release, tmp_path):
    # Nothing listens on port 1: a request would fail the run.
    expected = sha256(release / ARCHIVE)
    result, version_dir, archive = install(tmp_path, "--url", f"http://127.0.0.1:1/v{VERSION}", "--sha256", expected, "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"would install {version_dir} from http://127.0.0.1:1/v{VERSION}/{ARCHIVE}"
                             f" if its sha256 is {expected}\n")
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_download_is_refused_whatever_the_mirror_lists(release, mirror, tmp_path):
    (tmp_path / "opt").mkdir()
    result, version_dir, archive = install(tmp_path, "--url", f"{mirror.url}/tampered/v{VERSION}",
                                           "--sha256", sha256(release / ARCHIVE))
    assert result.returncode != 0
    assert "did not match the expected" in result.stderr and "nothing was installed" in result.stderr
    assert not version_dir.exists()
    assert list(archive.parent.iterdir()) == [] and list(version_dir.parent.iterdir()) == []


def test_a_download_with_the_wrong_sha256_is_refused_and_nothing_of_it_runs(planted, mirror, tmp_path):
    archive_file, marker = planted
    marker.unlink(missing_ok=True)
    (tmp_path / "opt").mkdir()
    result, version_dir, archive = install(tmp_path, "--url", f"{mirror.url}/planted/v{VERSION}", "--sha256", "f" * 64)
    assert result.returncode != 0
    assert (f"has sha256 {sha256(archive_file)}, which did not match the expected {'f' * 64}: not kept, nothing was installed"
            in result.stderr)
    assert not marker.exists(), "the binary of an archive that did not match ran"
    assert list(archive.parent.iterdir()) == [] and list(version_dir.parent.iterdir()) == []
    # The same archive with its own sha256 does run (so the marker would have shown it).
    result, version_dir, archive = install(tmp_path, "--url", f"{mirror.url}/planted/v{VERSION}",
                                           "--sha256", sha256(archive_file))
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("options", [["--url", "{url}/v" + VERSION], ["--url", "{url}/v" + VERSION, "--sha256", "abc123"],
                                     []],
                         ids=["no-sha256", "short-sha256", "nothing"])
def test_a_missing_or_malformed_sha256_is_a_usage_error(mirror, tmp_path, options):
    asked_before = len(mirror.asked)
    result, _version_dir, _archive = install(tmp_path, *[o.format(url=mirror.url) for o in options])
    assert result.returncode == 2, result.stderr
    assert "--sha256" in result.stderr.splitlines()[-1], result.stderr
    assert list(tmp_path.iterdir()) == []
    assert len(mirror.asked) == asked_before


def test_a_copied_archive_is_checked_against_the_given_sha256(release, tmp_path):
    expected = sha256(release / ARCHIVE)
    (tmp_path / "cache").mkdir()
    shutil.copy(release / ARCHIVE, tmp_path / "cache" / ARCHIVE)
    refused, version_dir, archive = install(tmp_path, "--sha256", "f" * 64)
    assert refused.returncode != 0
    assert f"checksum mismatch for {ARCHIVE}: expected sha256 {'f' * 64}, got {expected}" in refused.stderr
    assert not archive.exists() and not version_dir.exists()
    shutil.copy(release / ARCHIVE, archive)
    result, version_dir, archive = install(tmp_path, "--sha256", expected.upper())
    assert result.returncode == 0, result.stderr
    assert (version_dir / "livekit-server.sha256").is_file() and not archive.exists()


def test_an_unverified_copy_is_replaced_whole(release, mirror, tmp_path):
    version_dir = tmp_path / "opt" / VERSION
    version_dir.mkdir(parents=True)
    (version_dir / "livekit-server").write_text("not the release\n")
    (version_dir / "left-over").write_text("from an interrupted install\n")
    result, version_dir, _archive = install(tmp_path, "--url", f"{mirror.url}/v{VERSION}", "--sha256", sha256(release / ARCHIVE))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in version_dir.iterdir()) == ["LICENSE", "livekit-server", "livekit-server.sha256"]


def test_the_pinned_sha256_table_is_well_formed():
    """roles/livekit/vars/main.yml: release -> {amd64, arm64} -> sha256 (values only from upstream's checksums.txt)."""
    table = yaml.safe_load((ROOT / "roles" / "livekit" / "vars" / "main.yml").read_text())["_livekit_release_sha256"]
    assert isinstance(table, dict)
    for version, by_arch in table.items():
        assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version), version
        assert set(by_arch) <= {"amd64", "arm64"} and by_arch, (version, by_arch)
        for arch, digest in by_arch.items():
            assert re.fullmatch(r"[0-9a-f]{64}", digest), (version, arch, digest)
