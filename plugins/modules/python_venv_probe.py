#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: python_venv_probe
short_description: Read in one round trip what building a venv needs to know
version_added: 0.1.0
description:
  - Answers, without changing anything, the questions the P(hybridstack.letta_livekit.python_venv#role) role
    would otherwise ask in one task each. Is the base interpreter there? Does the venv exist, and what does it
    have installed? Which uv does the tools venv hold? What content, owner and mode do the files the role
    manages have?
  - The role then runs only the steps whose answer says they are needed, so a converged host costs one probe
    and one C(uv pip sync).
author:
  - Hybridstack Maintainers (@hybridstack)
options:
  venv:
    description:
      - Path of the virtual environment. Its C(bin/python) lists the installed distributions.
    type: path
    required: true
  python:
    description:
      - Base interpreter the venv is created from; reported as RV(python_usable).
    type: path
  tools_venv:
    description:
      - Venv that holds uv; its C(bin/uv --version) is reported as RV(uv_version).
    type: path
  paths:
    description:
      - Files and directories whose state is reported in RV(paths).
    type: list
    elements: path
    default: []
  record:
    description:
      - A JSON file an earlier run wrote, returned as RV(record) so the caller can compare it with RV(packages)
        and RV(environment).
    type: path
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
notes:
  - The package list comes from the venv's own interpreter run isolated (C(-I)), so nothing from the current
    directory or the user's site leaks into it.
"""

EXAMPLES = r"""
- name: Probe the venv
  hybridstack.letta_livekit.python_venv_probe:
    venv: /opt/letta/venv
    python: /usr/bin/python3
    tools_venv: /opt/python-venv-tools
    paths:
      - /opt/letta/venv.lock.txt
  register: venv_probe

- name: Show what is installed
  ansible.builtin.debug:
    msg: "{{ venv_probe.packages['letta'] | default('not installed') }}"
"""

RETURN = r"""
python_usable:
  description: Whether O(python) exists and is executable; V(false) when O(python) is not given.
  returned: always
  type: bool
  sample: true
venv_exists:
  description: Whether the venv's C(bin/python) exists.
  returned: always
  type: bool
  sample: true
packages:
  description: Installed distributions of the venv, normalised name to version; empty when the venv does not exist.
  returned: always
  type: dict
  sample: {"idna": "3.10", "six": "1.17.0"}
environment:
  description:
    - What the venv's interpreter reports for the values PEP 508 markers test (implementation, OS, platform,
      Python version); empty when the venv does not exist.
    - Opaque, but equal between two runs exactly when none of those values changed.
  returned: always
  type: dict
  sample: {"os_name": "posix", "sys_platform": "linux", "python": ["CPython", "3.13.5"]}
record:
  description: Content of O(record) when it holds a JSON object, else V(null).
  returned: always
  type: dict
  sample: {"lock": "0cf99eb565c4500535a68de7c4548d6dbe9eb533", "packages": {"six": "1.17.0"}}
tools_venv_exists:
  description: Whether the tools venv's C(bin/python) exists; V(false) when O(tools_venv) is not given.
  returned: always
  type: bool
  sample: true
uv_version:
  description: Version printed by the tools venv's uv; V(null) when it is missing or does not run.
  returned: always
  type: str
  sample: "0.9.5"
paths:
  description:
    - State of each of O(paths), keyed by the path as given.
    - C(checksum) is the SHA-1 of a regular file's content (as M(ansible.builtin.copy) compares it), else V(null).
    - C(mode) is the permission bits as four octal digits; C(owner) and C(group) are names, or ids without one.
  returned: always
  type: dict
  sample:
    /opt/letta/venv.lock.txt:
      exists: true
      isdir: false
      checksum: 0f9c2b8e2a0d1c5d7e8f9a0b1c2d3e4f5a6b7c8d
      owner: root
      group: root
      mode: "0644"
"""

import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess

from ansible.module_utils.basic import AnsibleModule

# Names normalised as PEP 503 does, so callers look packages up one way. The
# environment holds every value PEP 508 markers can test, so a record of a sync
# goes stale when the interpreter, the kernel or the machine changes.
LIST_PACKAGES = """
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


def is_executable(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def sha1_of(path):
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def name_of(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def path_state(path):
    """exists, isdir, checksum, owner, group and mode of one path (symlinks followed, as copy and file do)."""
    try:
        info = os.stat(path)
    except OSError:
        return {"exists": False, "isdir": False, "checksum": None, "owner": None, "group": None, "mode": None}
    return {
        "exists": True,
        "isdir": stat.S_ISDIR(info.st_mode),
        "checksum": sha1_of(path) if stat.S_ISREG(info.st_mode) else None,
        "owner": name_of(pwd.getpwuid, info.st_uid),
        "group": name_of(grp.getgrgid, info.st_gid),
        "mode": "%04o" % stat.S_IMODE(info.st_mode),
    }


def parse_uv_version(output):
    """'uv 0.9.5' or 'uv 0.9.5 (abc 2025-01-01)' -> '0.9.5'; anything else -> None."""
    words = output.split()
    if len(words) >= 2 and words[0] == "uv":
        return words[1]
    return None


def uv_version(uv):
    if not is_executable(uv):
        return None
    try:
        done = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False, timeout=60)
    except OSError:
        return None
    return parse_uv_version(done.stdout) if done.returncode == 0 else None


def installed_packages(venv_python):
    """(packages, environment, error): the venv's distributions and marker environment, or why not."""
    done = subprocess.run([venv_python, "-I", "-c", LIST_PACKAGES], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None, None, done.stderr.strip() or "exit status %d" % done.returncode
    listing = json.loads(done.stdout)
    return listing["packages"], listing["environment"], None


def read_record(path):
    """The JSON object a previous run left at path; None when there is none or it is not one."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            venv=dict(type="path", required=True),
            python=dict(type="path"),
            tools_venv=dict(type="path"),
            paths=dict(type="list", elements="path", default=[]),
            record=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    venv_python = os.path.join(module.params["venv"], "bin", "python")
    tools_venv = module.params["tools_venv"]
    result = dict(
        changed=False,
        python_usable=is_executable(module.params["python"]),
        venv_exists=os.path.exists(venv_python),
        packages={},
        environment={},
        record=read_record(module.params["record"]) if module.params["record"] else None,
        tools_venv_exists=bool(tools_venv) and os.path.exists(os.path.join(tools_venv, "bin", "python")),
        uv_version=uv_version(os.path.join(tools_venv, "bin", "uv")) if tools_venv else None,
        paths=dict((path, path_state(path)) for path in module.params["paths"]),
    )
    if result["venv_exists"]:
        packages, environment, error = installed_packages(venv_python)
        if error:
            module.fail_json(msg="%s could not list its packages: %s" % (venv_python, error), **result)
        result.update(packages=packages, environment=environment)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
