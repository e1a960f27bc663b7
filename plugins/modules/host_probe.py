#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_probe
short_description: Read in one round trip what a role would change on a host
version_added: 0.1.0
description:
  - The one way the collection's roles ask a host what it has (paths with their type, owner, group, mode, sha256 and link
    target; the text of small record files; systemd units; Debian packages; accounts; the distributions of
    Python virtual environments). It only reads.
  - A role probes once, compares the answer with what it would write (the
    P(hybridstack.letta_livekit.files_to_write#filter) filter) and runs only the steps whose answer differs, so a
    converged host costs one call here.
author:
  - Hybridstack Maintainers (@hybridstack)
options:
  paths:
    description:
      - Paths whose state is reported in RV(paths). Links are not followed; a link reports its target.
    type: list
    elements: path
    default: []
  contents:
    description:
      - Small text files whose content is returned in RV(contents) (records earlier runs wrote, /proc/sys values).
      - Up to 64 KiB of each is read.
    type: list
    elements: path
    default: []
  units:
    description: systemd units whose enablement and activity are reported in RV(units).
    type: list
    elements: str
    default: []
  packages:
    description: Debian packages whose installed version is reported in RV(packages).
    type: list
    elements: str
    default: []
  accounts:
    description: Report the host's users and groups in RV(users) and RV(groups).
    type: bool
    default: false
  venvs:
    description:
      - Python virtual environments whose installed distributions are reported in RV(venvs); each one's own
        interpreter (C(bin/python)), run isolated, lists them.
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
"""

EXAMPLES = r"""
- name: Read the unit file and the unit
  hybridstack.letta_livekit.host_probe:
    paths: [/etc/systemd/system/letta.service]
    units: [letta.service]
  register: letta_probe

- name: Write the unit only where it differs
  hybridstack.letta_livekit.write_files:
    files: "{{ wanted | hybridstack.letta_livekit.files_to_write(letta_probe) }}"
  vars:
    wanted:
      - {path: /etc/systemd/system/letta.service, content: "{{ lookup('template', 'letta.service.j2') }}"}
"""

RETURN = r"""
paths:
  description:
    - State of each of O(paths), keyed by the path as given.
    - C(type) is V(file), V(directory), V(link), V(other) or V(absent); C(mode) is the permission bits as four octal
      digits; C(owner) and C(group) are names, or ids without one; C(sha256) is a regular file's digest;
      C(target) is a link's target; C(writable) tells whether the module's user may write it; C(executable)
      whether it may run it (a regular file; links are followed, as an interpreter is often a link).
  returned: always
  type: dict
  sample:
    /etc/letta/letta.env:
      type: file
      owner: root
      group: letta
      mode: "0640"
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      target: null
      writable: true
      executable: false
contents:
  description: Text of each of O(contents), keyed by the path as given; V(null) for one that cannot be read.
  returned: always
  type: dict
  sample: {/var/lib/letta/schema.txt: "letta 0.16.8 on db.example.org:5432/letta\n"}
units:
  description:
    - C(enabled) as C(systemctl is-enabled) says it (V(enabled), V(disabled), V(static) ...) and C(active) as
      C(systemctl is-active) does; both empty for a unit systemd does not know.
  returned: always
  type: dict
  sample: {letta.service: {enabled: enabled, active: active}}
packages:
  description: Installed version of each of O(packages) that is installed; others are left out.
  returned: always
  type: dict
  sample: {nginx: "1.26.3-3+deb13u1"}
users:
  description: With O(accounts), every user by name with its uid, gid, home and shell; else empty.
  returned: always
  type: dict
  sample: {letta: {uid: 999, gid: 988, home: /var/lib/letta, shell: /usr/sbin/nologin}}
groups:
  description: With O(accounts), every group's gid by name; else empty.
  returned: always
  type: dict
  sample: {letta: 988}
venvs:
  description:
    - For each of O(venvs), whether it exists, its distributions (names normalised as PEP 503 does, to versions)
      and C(environment), what its interpreter reports for the values PEP 508 markers test (equal between two
      runs exactly when none of them changed).
  returned: always
  type: dict
  sample: {/opt/letta/venv: {exists: true, packages: {six: "1.17.0"}, environment: {os_name: posix}}}
"""

import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess

from ansible.module_utils.basic import AnsibleModule

CONTENT_LIMIT = 65536

# Run by each venv's own interpreter. The environment holds every value PEP 508
# markers can test, so a record of a sync goes stale when the interpreter, the
# kernel or the machine changes.
LIST_DISTRIBUTIONS = """
import importlib.metadata, json, os, platform, re, sys
print(json.dumps({
    "packages": {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
                 for d in importlib.metadata.distributions()},
    "environment": {
        "implementation": [sys.implementation.name, list(sys.implementation.version)],
        "os_name": os.name,
        "sys_platform": sys.platform,
        "platform": list(platform.uname()[:5]),
        "python": [platform.python_implementation(), platform.python_version()],
    },
}))
"""

ABSENT = {"type": "absent", "owner": None, "group": None, "mode": None, "sha256": None, "target": None,
          "writable": False, "executable": False}


def name_of(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def kind_of(mode):
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def path_state(path):
    try:
        info = os.lstat(path)
    except OSError:
        return dict(ABSENT)
    kind = kind_of(info.st_mode)
    return {
        "type": kind,
        "owner": name_of(pwd.getpwuid, info.st_uid),
        "group": name_of(grp.getgrgid, info.st_gid),
        "mode": "%04o" % stat.S_IMODE(info.st_mode),
        "sha256": sha256_of(path) if kind == "file" else None,
        "target": os.readlink(path) if kind == "link" else None,
        "writable": os.access(path, os.W_OK),
        "executable": os.path.isfile(path) and os.access(path, os.X_OK),
    }


def read_text(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(CONTENT_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None


def parse_units(units, shown):
    """The output of one `systemctl show` for units, as is-enabled and is-active would say it."""
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in shown.strip("\n").split("\n\n")]
    states = {}
    for unit, block in zip(units, blocks):
        known = block.get("LoadState", "not-found") != "not-found"
        states[unit] = {
            "enabled": block.get("UnitFileState", "") if known else "",
            "active": block.get("ActiveState", "") if known else "",
        }
    return states


def unit_states(module, units):
    if not units:
        return {}
    done = subprocess.run(["systemctl", "show", "--property=Id,UnitFileState,ActiveState,LoadState", "--"] + units,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        module.fail_json(msg="systemctl show failed: %s" % done.stderr.strip())
    return parse_units(units, done.stdout)


def package_versions(packages):
    if not packages:
        return {}
    done = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}\t${Package}\t${Version}\n"] + packages,
                          capture_output=True, text=True, check=False)
    found = [line.split("\t") for line in done.stdout.splitlines()]
    return dict((fields[1], fields[2]) for fields in found if len(fields) == 3 and fields[0] == "installed")


def accounts():
    users = dict((user.pw_name, {"uid": user.pw_uid, "gid": user.pw_gid, "home": user.pw_dir,
                                 "shell": user.pw_shell}) for user in pwd.getpwall())
    groups = dict((group.gr_name, group.gr_gid) for group in grp.getgrall())
    return users, groups


def venv_state(module, venv):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        return {"exists": False, "packages": {}, "environment": {}}
    done = subprocess.run([python, "-I", "-c", LIST_DISTRIBUTIONS], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        module.fail_json(msg="%s could not list its packages: %s"
                         % (python, done.stderr.strip() or "exit status %d" % done.returncode))
    listing = json.loads(done.stdout)
    return {"exists": True, "packages": listing["packages"], "environment": listing["environment"]}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", default=[]),
            contents=dict(type="list", elements="path", default=[]),
            units=dict(type="list", elements="str", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            accounts=dict(type="bool", default=False),
            venvs=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    users, groups = accounts() if params["accounts"] else ({}, {})
    module.exit_json(
        changed=False,
        paths=dict((path, path_state(path)) for path in params["paths"]),
        contents=dict((path, read_text(path)) for path in params["contents"]),
        units=unit_states(module, params["units"]),
        packages=package_versions(params["packages"]),
        users=users,
        groups=groups,
        venvs=dict((venv, venv_state(module, venv)) for venv in params["venvs"]),
    )


if __name__ == "__main__":
    main()
