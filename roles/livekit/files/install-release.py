"""Install one livekit-server release archive into its version directory, verified, in one call.

    install-release.py VERSION VERSION_DIR ARCHIVE --sha256 HEX [--url RELEASE_URL] [--check]

Run with the host's python3. ARCHIVE is the archive's path on the host: with
--url it is downloaded there from RELEASE_URL (through a temporary file, kept
only when its sha256 is the expected one); without, it was copied there
already and is checked the same way. The expected sha256 is --sha256, always:
it must be known before the download (the role's pinned table, the
operator's livekit_archive_sha256, or the checksums.txt beside an offline
archive on the controller). Nothing is read from the download's own server
to vouch for the download: a mirror that could swap the archive could swap
its checksums.txt too.

The archive is unpacked into a staging directory beside VERSION_DIR; its
livekit-server must report VERSION, and its sha256 is recorded beside it as
livekit-server.sha256. Only then does the staging directory replace
VERSION_DIR (an unverified copy there goes), so VERSION_DIR is either whole
and recorded or absent. The archive is removed in every case. Nothing from the
archive runs before its sha256 matched. With --check the arguments are only
checked and what would be done is printed; nothing is read or written.

Prints one line of what it did ("installed VERSION_DIR") or would do; exits
non-zero with a "livekit: ..." line naming what failed.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

CHUNK = 1 << 20
BINARY = "livekit-server"


def fail(message):
    sys.exit("livekit: " + message)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, target, expected):
    os.makedirs(os.path.dirname(target), mode=0o750, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(target))
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=300) as response:
            shutil.copyfileobj(response, out, CHUNK)
        got = sha256_of(partial)
        if got != expected:
            fail("%s has sha256 %s, which did not match the expected %s: not kept, nothing was installed."
                 % (url, got, expected))
        os.chmod(partial, 0o640)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def unpack_verified(archive, version, version_dir):
    """Unpacked and checked beside VERSION_DIR, then renamed into it whole."""
    os.makedirs(os.path.dirname(version_dir), mode=0o755, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(version_dir))
    try:
        # The "data" filter refuses members outside the directory, links out
        # of it and device files, and leaves the files to root.
        with tarfile.open(archive) as unpacking:
            unpacking.extractall(staging, filter="data")
        binary = os.path.join(staging, BINARY)
        if not os.path.isfile(binary):
            fail("the archive has no %s; nothing was installed." % BINARY)
        os.chmod(binary, 0o755)
        reported = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        if version not in reported.stdout:
            fail("the unpacked %s reports %r, not version %s; nothing was installed."
                 % (BINARY, (reported.stdout or reported.stderr).strip(), version))
        record = os.path.join(staging, BINARY + ".sha256")
        with open(record, "w", encoding="ascii") as out:
            out.write(sha256_of(binary) + "\n")
        os.chmod(record, 0o644)
        os.chmod(staging, 0o755)
        if os.path.lexists(version_dir):
            shutil.rmtree(version_dir)
        os.rename(staging, version_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(arguments):
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("version")
    parser.add_argument("version_dir")
    parser.add_argument("archive")
    parser.add_argument("--url", default="")
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--check", action="store_true")
    options = parser.parse_args(arguments)
    if not re.fullmatch(r"[0-9a-fA-F]{64}", options.sha256):
        parser.error("--sha256 must be 64 hex digits (got %r)" % options.sha256)
    version, version_dir, archive, check = options.version, options.version_dir, options.archive, options.check
    release_url = options.url.rstrip("/")
    expected = options.sha256.lower()
    if check:
        source = release_url + "/" + os.path.basename(archive) if release_url else archive
        print("would install %s from %s if its sha256 is %s" % (version_dir, source, expected))
        return 0
    try:
        if release_url:
            download(release_url + "/" + os.path.basename(archive), archive, expected)
        else:
            got = sha256_of(archive)
            if got != expected:
                fail("checksum mismatch for %s: expected sha256 %s, got %s; nothing was installed."
                     % (os.path.basename(archive), expected, got))
        unpack_verified(archive, version, version_dir)
    finally:
        if os.path.exists(archive):
            os.unlink(archive)
    print("installed " + version_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
