#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: letta_message_patch
short_description: Apply or undo the ON CONFLICT patch to Letta's C(letta/orm/message.py)
version_added: 0.1.0
description:
  - Letta seeds its C(message_sequence) table with C(INSERT OR IGNORE), which only SQLite accepts. A server that
    reaches PostgreSQL through its SQLite code path (for example when C(LETTA_PG_URI) is not in its environment)
    then answers agent creation with HTTP 500 and logs C(syntax error at or near "OR").
  - With O(state=present) this module rewrites every such statement to
    C(INSERT INTO message_sequence ... FROM messages WHERE true ON CONFLICT (id\) DO NOTHING), which SQLite 3.24+
    and PostgreSQL both accept, and the C(is DatabaseChoice.*) comparisons to C(==). The rest of the file stays
    byte-identical. O(state=absent) restores the original text exactly.
  - The installed Letta is found by asking the interpreter of O(venv), never by guessing a site-packages path.
  - A file that is neither the known unpatched nor the known patched form is refused, and left as it is.
  - The new content is compile-checked with the venv's own interpreter, then moved into place atomically with the
    old file's owner and mode. Cached bytecode of the old content is removed.
  - Pair it with a service restart when it reports a change; the module itself knows nothing about services.
author:
  - Hybridstack Maintainers (@hybridstack)
options:
  venv:
    description:
      - Path of the virtual environment Letta is installed in.
      - Its C(bin/python) is asked where the C(letta) package is and which version is installed.
    type: path
    required: true
  state:
    description:
      - V(present) rewrites the statements to the form both databases accept.
      - V(absent) restores the text the Letta release shipped.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description:
      - Keep a timestamped copy of the file next to it before changing it.
    type: bool
    default: false
  supported_versions:
    description:
      - Letta releases this run accepts. Any other installed version fails before the file is read, so an
        upgrade is a deliberate decision.
      - When not set, every release whose C(message.py) this module was checked against (the list is printed in
        the failure message).
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    description: Reports what would change and writes nothing.
  diff_mode:
    support: full
    description: Shows the rewritten lines of C(message.py).
notes:
  - A release that no longer contains the statements reports RV(status_before=nothing_to_patch) and is left alone.
  - Run it as a user that may write the venv (normally root); a read-only file fails with the file left unchanged.
seealso:
  - name: Letta issue 3125
    description: Upstream report of the SQLite code path running against PostgreSQL.
    link: https://github.com/letta-ai/letta/issues/3125
"""

EXAMPLES = r"""
- name: Patch the Letta venv
  hybridstack.letta_livekit.letta_message_patch:
    venv: /opt/letta/venv
  register: letta_patch_result

- name: Restart Letta when the file changed
  ansible.builtin.systemd_service:
    name: letta.service
    state: restarted
  when: letta_patch_result is changed

- name: Put the file back as the release shipped it, keeping a copy
  hybridstack.letta_livekit.letta_message_patch:
    venv: /opt/letta/venv
    state: absent
    backup: true

- name: Accept only the release this host is meant to run
  hybridstack.letta_livekit.letta_message_patch:
    venv: /srv/letta/venv
    supported_versions: ["0.16.8"]
"""

RETURN = r"""
path:
  description: The C(message.py) the module read and, when it changed, rewrote.
  returned: when Letta was found in the venv
  type: str
  sample: /opt/letta/venv/lib/python3.13/site-packages/letta/orm/message.py
letta_version:
  description: Version of the C(letta) distribution installed in the venv.
  returned: when Letta was found in the venv
  type: str
  sample: 0.15.1
python:
  description: The venv interpreter that located Letta and compiled the new content.
  returned: when the venv has an interpreter
  type: str
  sample: /opt/letta/venv/bin/python
status_before:
  description: Form of the file before the module ran.
  returned: when the file was read
  type: str
  choices: [unpatched, patched, nothing_to_patch, unknown]
  sample: unpatched
status_after:
  description: Form of the file after the module ran (or would have, in check mode).
  returned: when the file was read and its form is known
  type: str
  choices: [unpatched, patched, nothing_to_patch]
  sample: patched
statements:
  description: Number of C(message_sequence) inserts in the file that the patch rewrites or has rewritten.
  returned: when the file was read
  type: int
  sample: 2
details:
  description: Counts behind the classification, and the reason for an C(unknown) verdict.
  returned: when the file was read
  type: dict
  sample:
    status: unpatched
    unpatched_statements: 2
    patched_statements: 0
    is_comparisons: 2
    eq_comparisons: 0
    sequence_inserts: 2
    reason: 2 statement(s) unpatched
backup_file:
  description: The copy of the previous content.
  returned: when O(backup=true) and the file changed outside check mode
  type: str
  sample: /opt/letta/venv/lib/python3.13/site-packages/letta/orm/message.py.12345.2026-11-25@14:30:00~
removed_bytecode:
  description: Cached bytecode of the old content that was removed so Python recompiles the new file.
  returned: when the file changed outside check mode
  type: list
  elements: str
  sample: [/opt/letta/venv/lib/python3.13/site-packages/letta/orm/__pycache__/message.cpython-313.pyc]
"""

import glob
import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.hybridstack.letta_livekit.plugins.module_utils.letta_message_patch import (
    CHECKED_RELEASES,
    UNKNOWN,
    UnknownContent,
    classify,
    desired_text,
)

# Runs inside the venv's interpreter. find_spec on a top-level package locates
# it without executing letta/__init__.py, which would import the whole server.
PROBE = r"""
import importlib.metadata, importlib.util, json, os, sys
out = {"python": sys.executable, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
       "package_dir": None, "version": None}
spec = importlib.util.find_spec("letta")
if spec is not None:
    if spec.origin and spec.origin != "namespace":
        out["package_dir"] = os.path.dirname(spec.origin)
    elif spec.submodule_search_locations:
        out["package_dir"] = list(spec.submodule_search_locations)[0]
try:
    out["version"] = importlib.metadata.version("letta")
except importlib.metadata.PackageNotFoundError:
    pass
print(json.dumps(out))
"""

_WORDS = {"unpatched": "unpatched", "patched": "already patched",
          "nothing_to_patch": "free of the statements the patch rewrites"}

COMPILE = "import sys; compile(open(sys.argv[1], 'rb').read(), sys.argv[2], 'exec', dont_inherit=True)"


def locate_letta(module, venv):
    """Ask the venv's interpreter where Letta lives; fail with what was found."""
    if not os.path.isdir(venv):
        module.fail_json(msg="venv %s does not exist (or is not a directory)" % venv)
    python = os.path.join(venv, "bin", "python")
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        module.fail_json(msg="%s is not a virtual environment: it has no executable bin/python" % venv)
    # -I: the answer must not depend on the caller's PYTHONPATH or cwd.
    rc, out, err = module.run_command([python, "-I", "-c", PROBE])
    if rc != 0:
        module.fail_json(msg="the venv's python %s could not be asked for Letta (rc=%d): %s" % (python, rc, err.strip()),
                         python=python)
    try:
        found = json.loads(out)
    except ValueError:
        module.fail_json(msg="the venv's python %s answered something that is not JSON: %r" % (python, out[:200]),
                         python=python)
    if os.path.realpath(found["prefix"]) != os.path.realpath(venv) or found["prefix"] == found["base_prefix"]:
        module.fail_json(msg="%s is not a virtual environment: its python reports prefix %s" % (venv, found["prefix"]),
                         python=python)
    if found["package_dir"] is None:
        module.fail_json(msg="no Letta in venv %s: its python cannot find the package 'letta'" % venv, python=python)
    if found["version"] is None:
        module.fail_json(msg="no Letta distribution in venv %s: package 'letta' at %s has no installed metadata"
                         % (venv, found["package_dir"]), python=python)
    path = os.path.join(found["package_dir"], "orm", "message.py")
    if not os.path.isfile(path):
        module.fail_json(msg="Letta %s in venv %s has no %s" % (found["version"], venv, path), python=python,
                         letta_version=found["version"])
    return python, found["version"], path


def check_writable(module, path, result):
    """Fail before anything is written if the file cannot be replaced."""
    directory = os.path.dirname(path)
    blocked = [p for p in (path, directory) if not os.access(p, os.W_OK)]
    if blocked:
        module.fail_json(msg="cannot rewrite %s: %s not writable by uid %d; the file is unchanged"
                         % (path, " and ".join(blocked), os.geteuid()), **result)


def compile_check(module, python, content, path, result):
    """Compile the new content with the venv's interpreter; return the temp file."""
    fd, tmp = tempfile.mkstemp(prefix="letta-message-", suffix=".py", dir=module.tmpdir)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    rc, out, err = module.run_command([python, "-I", "-c", COMPILE, tmp, path])
    if rc != 0:
        os.unlink(tmp)
        module.fail_json(msg="the rewritten %s does not compile with %s; the file is unchanged: %s"
                         % (path, python, (err or out).strip()), **result)
    return tmp


def remove_stale_bytecode(path):
    directory, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    removed = []
    for pyc in sorted(glob.glob(os.path.join(directory, "__pycache__", stem + ".*.pyc"))):
        os.unlink(pyc)
        removed.append(pyc)
    return removed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            venv=dict(type="path", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            backup=dict(type="bool", default=False),
            supported_versions=dict(type="list", elements="str"),
        ),
        supports_check_mode=True,
    )
    venv = os.path.abspath(module.params["venv"])
    state = module.params["state"]
    supported = module.params["supported_versions"] or list(CHECKED_RELEASES)

    python, version, path = locate_letta(module, venv)
    result = dict(changed=False, path=path, letta_version=version, python=python)
    if version not in supported:
        module.fail_json(msg="Letta %s found in venv %s is not a supported version (supported_versions: %s); "
                             "the file is unchanged" % (version, venv, ", ".join(supported)), **result)

    try:
        with open(path, "rb") as handle:
            before_bytes = handle.read()
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, to_native(exc)), **result)
    try:
        before = before_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        module.fail_json(msg="%s is not UTF-8 text (%s); refusing to guess" % (path, to_native(exc)),
                         status_before=UNKNOWN, **result)

    found = classify(before)
    result.update(status_before=found.status, details=found.as_dict(),
                  statements=found.unpatched + found.patched)
    try:
        found, after, status_after = desired_text(before, state)
    except UnknownContent as exc:
        module.fail_json(msg="%s of Letta %s is neither the known unpatched nor the patched form (%s); "
                             "the file is unchanged" % (path, version, to_native(exc)), **result)
    result["status_after"] = status_after
    changed = after != before
    result["changed"] = changed

    if changed and module._diff:
        result["diff"] = dict(before=before, after=after,
                              before_header="%s (%s)" % (path, found.status),
                              after_header="%s (%s)" % (path, status_after))

    if changed:
        check_writable(module, path, result)
        after_bytes = to_bytes(after, encoding="utf-8")
        tmp = compile_check(module, python, after_bytes, path, result)
        if module.check_mode:
            os.unlink(tmp)
        else:
            if module.params["backup"]:
                result["backup_file"] = module.backup_local(path)
            # atomic_move gives the temp file the old file's owner, mode and
            # SELinux context before it renames it over the old one.
            module.atomic_move(tmp, path)
            result["removed_bytecode"] = remove_stale_bytecode(path)

    if changed:
        verb = "would be" if module.check_mode else "was"
        result["msg"] = "%s %s %s (Letta %s)" % (path, verb, "patched" if state == "present" else "restored", version)
    else:
        result["msg"] = "%s is %s (Letta %s); nothing to do" % (path, _WORDS[found.status], version)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
