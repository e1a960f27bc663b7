"""Print the download URL of one sdist file on the package index this host's pip uses.

Run with the host's python3: it only reads the index (PEP 691 JSON), so the
file can then be fetched and checked against its sha256 before anything in it
runs. `pip download` would build the sdist's metadata first.
"""
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request


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


def main(project, filename):
    index = index_url().rstrip("/") + "/"
    request = urllib.request.Request(urllib.parse.urljoin(index, project + "/"),
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        page = json.load(response)
        base = response.geturl()
    for entry in page.get("files", []):
        if entry.get("filename") == filename:
            print(urllib.parse.urljoin(base, entry["url"]).split("#", 1)[0])
            return 0
    sys.stderr.write("%s is not listed for %s on the index %s\n" % (filename, project, index))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
