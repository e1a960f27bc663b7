"""One look at what the role manages: files and directories (owner:group:mode
and sha1), unit states, the cluster's archive_mode and the stanza's info.
Read-only; prints one JSON document."""
import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys

spec = json.loads(sys.argv[1])


def name_of(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def describe(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ""
    owner = f"{name_of(pwd.getpwuid, st.st_uid)}:{name_of(grp.getgrgid, st.st_gid)}:{stat.S_IMODE(st.st_mode):o}"
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as handle:
            return f"{owner} {hashlib.sha1(handle.read()).hexdigest()}"
    return owner if stat.S_ISDIR(st.st_mode) else "not a file"


def run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        return None


def state(verb, unit):
    result = run(["systemctl", verb, unit])
    return result.stdout.strip() if result else ""


as_postgres = ["runuser", "-u", "postgres", "--"]
report = {
    "files": {path: describe(path) for path in spec["paths"]},
    "units": {unit: {"enabled": state("is-enabled", unit), "active": state("is-active", unit)} for unit in spec["units"]},
}
archive_mode = run(as_postgres + ["psql", "-X", "-p", str(spec["port"]), "-Atc", "SHOW archive_mode"])
report["archive_mode"] = archive_mode.stdout.strip() if archive_mode and archive_mode.returncode == 0 else ""
if os.path.exists(spec["conf"]) and os.path.exists("/usr/bin/pgbackrest"):
    info = run(as_postgres + ["pgbackrest", f"--stanza={spec['stanza']}", "--output=json", "info"])
    if info and info.returncode == 0:
        report["info"] = (json.loads(info.stdout) or [{}])[0]
print(json.dumps(report))
