"""Fetch one release's sdist from the package index this host's pip uses, check it, unpack it.

    fetch-sdist.py PROJECT VERSION SHA256 DIRECTORY [--check]

Run with the host's python3. The file is found on the index (PEP 691 JSON)
and streamed to a temporary file beside DIRECTORY/PROJECT-VERSION.tar.gz; it
is renamed into place only when its sha256 is the expected one, and only then
unpacked into DIRECTORY (`pip download` of an sdist would build its metadata
first, running code from it). A copy already there with that sha256 is kept.
With --check nothing is written. Prints what it did (or would do), one line
per step: "fetched URL" and "unpacked PATH", or "would fetch URL" and "would
unpack PATH".
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request

CHUNK = 1 << 20


def index_url():
    configured = os.environ.get("PIP_INDEX_URL")
    if not configured:
        got = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                             capture_output=True, text=True, check=False)
        configured = got.stdout.strip() if got.returncode == 0 else ""
    if configured:
        return configured
    from pip._internal.models.index import PyPI  # pip's own default index
    return PyPI.simple_url


def find_url(project, filename):
    index = index_url().rstrip("/") + "/"
    request = urllib.request.Request(urllib.parse.urljoin(index, project + "/"),
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        page = json.load(response)
        base = response.geturl()
    for entry in page.get("files", []):
        if entry.get("filename") == filename:
            return urllib.parse.urljoin(base, entry["url"]).split("#", 1)[0]
    sys.exit("%s is not listed for %s on the index %s" % (filename, project, index))


def sha256_of(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def fetch(url, target, expected):
    handle, partial = tempfile.mkstemp(prefix=".fetch-", dir=os.path.dirname(target))
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=300) as response:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            sys.exit("%s has sha256 %s, not the expected %s: not kept" % (url, digest.hexdigest(), expected))
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def main(project, version, expected, directory, check):
    filename = "%s-%s.tar.gz" % (project, version)
    target = os.path.join(directory, filename)
    unpacked = os.path.join(directory, "%s-%s" % (project, version))
    if sha256_of(target) != expected:
        url = find_url(project, filename)
        if check:
            print("would fetch " + url)
        else:
            fetch(url, target, expected)
            print("fetched " + url)
    if not os.path.exists(os.path.join(unpacked, "alembic.ini")):
        if check:
            print("would unpack " + unpacked)
        else:
            unpack(target, unpacked)
            print("unpacked " + unpacked)
    return 0


def unpack(archive_path, unpacked):
    """Unpacked beside its place and renamed into it: the directory is there only when whole."""
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(unpacked))
    try:
        # The "data" filter refuses members outside the directory, links out
        # of it and device files, and leaves the files to root.
        with tarfile.open(archive_path) as archive:
            archive.extractall(staging, filter="data")
        os.chmod(os.path.join(staging, os.path.basename(unpacked)), 0o755)
        if os.path.isdir(unpacked):
            shutil.rmtree(unpacked)
        os.rename(os.path.join(staging, os.path.basename(unpacked)), unpacked)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    check = "--check" in arguments
    arguments = [a for a in arguments if a != "--check"]
    if len(arguments) != 4:
        sys.exit(__doc__)
    sys.exit(main(*arguments, check=check))
