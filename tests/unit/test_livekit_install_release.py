# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/livekit/files/install-release.py with the real livekit-server release
(scripts/livekit-archive), served from loopback the way an operator's mirror
serves it, run with this interpreter as the role runs it with the host's."""

import functools
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

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
def mirror(release, tmp_path_factory):
    """Serves v<VERSION>/ (the real release) and tampered/v<VERSION>/ (its
    checksums.txt with a changed archive, and a checksums.txt without it)."""
    root = tmp_path_factory.mktemp("mirror")
    shutil.copytree(release, root / f"v{VERSION}")
    tampered = root / "tampered" / f"v{VERSION}"
    shutil.copytree(release, tampered)
    with open(tampered / ARCHIVE, "ab") as archive:
        archive.write(b"\0")
    unlisted = root / "unlisted" / f"v{VERSION}"
    shutil.copytree(release, unlisted)
    (unlisted / "checksums.txt").write_text("0" * 64 + "  livekit_0.0.0_linux_amd64.tar.gz\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def install(tmp_path, *options):
    version_dir, archive = tmp_path / "opt" / VERSION, tmp_path / "cache" / ARCHIVE
    result = subprocess.run([sys.executable, str(SCRIPT), VERSION, str(version_dir), str(archive), *options],
                            capture_output=True, text=True, timeout=300, check=False)
    return result, version_dir, archive


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_downloads_verifies_unpacks_and_records_the_binary(mirror, tmp_path):
    result, version_dir, archive = install(tmp_path, "--url", f"{mirror}/v{VERSION}")
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


def test_check_mode_reads_the_checksums_and_writes_nothing(mirror, tmp_path):
    result, version_dir, archive = install(tmp_path, "--url", f"{mirror}/v{VERSION}", "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"would install {version_dir}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_download_is_refused_and_nothing_is_kept(mirror, tmp_path):
    (tmp_path / "opt").mkdir()
    result, version_dir, archive = install(tmp_path, "--url", f"{mirror}/tampered/v{VERSION}")
    assert result.returncode != 0
    assert "did not match the expected" in result.stderr and "nothing was installed" in result.stderr
    assert not version_dir.exists()
    assert list(archive.parent.iterdir()) == [] and list(version_dir.parent.iterdir()) == []


def test_a_release_whose_checksums_lack_the_archive_is_named(mirror, tmp_path):
    result, version_dir, _archive = install(tmp_path, "--url", f"{mirror}/unlisted/v{VERSION}")
    assert result.returncode != 0
    assert f"livekit: no sha256 for {ARCHIVE} in {mirror}/unlisted/v{VERSION}/checksums.txt" in result.stderr
    assert list(tmp_path.iterdir()) == []


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


def test_an_unverified_copy_is_replaced_whole(mirror, tmp_path):
    version_dir = tmp_path / "opt" / VERSION
    version_dir.mkdir(parents=True)
    (version_dir / "livekit-server").write_text("not the release\n")
    (version_dir / "left-over").write_text("from an interrupted install\n")
    result, version_dir, _archive = install(tmp_path, "--url", f"{mirror}/v{VERSION}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in version_dir.iterdir()) == ["LICENSE", "livekit-server", "livekit-server.sha256"]
