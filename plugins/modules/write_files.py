#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: write_files
short_description: Write several small files, and the directories they go in, with their owner, group and mode in one round trip
version_added: 0.1.0
description:
  - Makes each listed file hold exactly the given content, with the given owner, group and mode, and reports
    which files changed. One call replaces a M(ansible.builtin.copy) or M(ansible.builtin.template) task per file,
    each of which costs two module calls and a file transfer.
  - A new or changed file is written to a temporary file in its own directory that already has its final owner,
    group and mode, then renamed over the old one; so no reader ever sees a partial file, and a file with a
    secret is never readable by others, not even for a moment. An unchanged file keeps its content; only a
    differing owner, group or mode is corrected.
  - The content travels as a module argument, so it shows in the task's invocation at high verbosity and in
    C(--diff) output, as a template's would; a task writing a secret sets C(no_log), which hides both.
  - Content is text; render templates on the controller with P(ansible.builtin.template#lookup).
  - Directories listed in O(directories) are made (or their owner, group and mode corrected) first, in order,
    which spares a M(ansible.builtin.file) call before the files. As with M(ansible.builtin.file), missing
    parents are made too, with the same owner, group and mode.
  - The parent directory, the owner and the group must exist; in check mode a missing one (which an earlier task
    or an earlier entry would have created) only makes the path count as changed. SELinux contexts are not
    managed (the collection targets Debian).
author:
  - Hybridstack Maintainers (@hybridstack)
options:
  directories:
    description: Directories to make or correct before the files are written, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory on the host.
        type: path
        required: true
      owner:
        description: Owner of the directory.
        type: str
        default: root
      group:
        description: Group of the directory.
        type: str
        default: root
      mode:
        description: Mode of the directory, as an octal string such as C("0750").
        type: str
        default: "0755"
  files:
    description: The files to write, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file on the host.
        type: path
        required: true
      content:
        description: The whole content of the file.
        type: str
        required: true
      owner:
        description: Owner of the file.
        type: str
        default: root
      group:
        description: Group of the file.
        type: str
        default: root
      mode:
        description: Mode of the file, as an octal string such as C("0640").
        type: str
        default: "0644"
      validate:
        description:
          - A command that checks the new content before it replaces the file, as O(ansible.builtin.template#module:validate)
            does; C(%s) stands for the path of the checked file and C(%%) for a literal C(%), any other C(%) is refused.
          - The command is split into arguments the way a shell would split words (quotes are honoured), then C(%s) is
            replaced in each argument; no shell runs it, so wrap it in C(/bin/sh -c '...') when it needs one.
          - It runs on the temporary file that already holds the new content with its final owner, group and mode,
            in the file's own directory; only when it exits 0 is that file renamed over the old one. On any other
            exit the temporary file is removed, the old file stays as it was, and the task fails with the path and
            the command's output.
          - Not run when the content is unchanged (only owner, group or mode differ), nor in check mode.
        type: str
attributes:
  check_mode:
    support: full
    description: Reports which files would change and writes nothing.
  diff_mode:
    support: full
    description: Shows each changed file's old and new content (set C(no_log) on a task whose files hold secrets).
"""

EXAMPLES = r"""
- name: Write the environment file, in its directory
  hybridstack.letta_livekit.write_files:
    directories:
      - path: /etc/letta
        group: letta
        mode: "0750"
    files:
      - path: /etc/letta/letta.env
        content: "{{ lookup('ansible.builtin.template', 'letta.env.j2') }}"
        group: letta
        mode: "0640"
  no_log: true

- name: Write an nginx main config, checked by nginx before it replaces the old one
  hybridstack.letta_livekit.write_files:
    files:
      - path: /etc/nginx/nginx.conf
        content: "{{ lookup('ansible.builtin.template', 'nginx.conf.j2') }}"
        validate: /usr/sbin/nginx -t -q -c %s

- name: Write the backup service and its timers
  hybridstack.letta_livekit.write_files:
    files:
      - path: /etc/systemd/system/backup@.service
        content: "{{ lookup('ansible.builtin.template', 'backup@.service.j2') }}"
      - path: /etc/systemd/system/backup-full.timer
        content: "{{ lookup('ansible.builtin.template', 'backup-full.timer.j2') }}"
  register: units_written
  notify: reload systemd
"""

RETURN = r"""
changed_paths:
  description: >-
    The directories made or corrected, then the files whose content, owner, group or mode this call changed (or
    would change in check mode).
  returned: always
  type: list
  elements: str
"""

import grp
import os
import pwd
import re
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule


def read_bytes(module, path):
    try:
        with open(path, "rb") as current:
            return current.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        module.fail_json(msg=f"{path}: a directory is in the way")


def wanted_ids(module, spec):
    """uid, gid and mode asked for; in check mode an owner or group an earlier task would create is None."""
    try:
        mode = int(spec["mode"], 8)
    except ValueError:
        module.fail_json(msg=f"{spec['path']}: mode {spec['mode']!r} is not an octal number such as '0640'")
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg=f"{spec['path']}: mode {spec['mode']!r} is out of range")
    ids = []
    for kind, name, find in (("user", spec["owner"], lambda n: pwd.getpwnam(n).pw_uid),
                             ("group", spec["group"], lambda n: grp.getgrnam(n).gr_gid)):
        try:
            ids.append(find(name))
        except KeyError:
            if not module.check_mode:
                module.fail_json(msg=f"{spec['path']}: no {kind} named {name} on the host")
            ids.append(None)
    return ids[0], ids[1], mode


PLACEHOLDER = re.compile(r"%(.?)")


def validate_argv(command, checked):
    """argv of a validate command for the file checked; None when it names no %s or holds a stray %."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    argv, seen = [], 0
    for word in words:
        parts, start = [], 0
        for found in PLACEHOLDER.finditer(word):
            if found.group(1) not in ("s", "%"):
                return None
            seen += found.group(1) == "s"
            parts.append(word[start:found.start()] + (checked if found.group(1) == "s" else "%"))
            start = found.end()
        argv.append("".join(parts) + word[start:])
    return argv if seen else None


def replace(module, path, data, uid, gid, mode, validate=None):
    """Write data beside path with its final owner and mode, check it, then rename it over path.

    The temporary file is removed on any failure; a validate failure returns its message instead of raising.
    """
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchown(out.fileno(), uid, gid)
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if validate is not None:
            # The checker sees the file as the service will: content, owner and mode.
            rc, stdout, stderr = module.run_command(validate_argv(validate, temporary))
            if rc != 0:
                os.unlink(temporary)
                output = "\n".join(text.strip() for text in (stderr, stdout) if text.strip())
                return f"{path}: the new content failed validation ({validate!r} exited {rc}), the old file is kept: {output}"
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return None


def make_directory(module, spec, changed_paths):
    """Make or correct one directory; True when it changed (or would)."""
    path = spec["path"]
    if not os.path.isabs(path):
        module.fail_json(msg=f"{path}: the path must be absolute")
    uid, gid, mode = wanted_ids(module, spec)
    if os.path.isdir(path):
        if uid is not None and gid is not None and not attributes_differ(path, uid, gid, mode):
            return False
    # The directory and its missing parents, innermost first.
    missing, current = [], path
    while not os.path.isdir(current):
        if os.path.lexists(current):
            module.fail_json(msg=f"{current}: a file is in the way of the directory")
        missing.append(current)
        current = os.path.dirname(current)
    if not module.check_mode:
        try:
            for directory in reversed(missing):
                # Nobody else may enter it before it has its owner and mode.
                os.mkdir(directory, 0o700)
                os.chown(directory, uid, gid)
                os.chmod(directory, mode)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        except OSError as error:
            module.fail_json(msg=f"{path}: {error.strerror}", changed=bool(changed_paths), changed_paths=changed_paths)
    return True


def attributes_differ(path, uid, gid, mode):
    seen = os.stat(path)
    return (seen.st_uid, seen.st_gid, seen.st_mode & 0o7777) != (uid, gid, mode)


def main():
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list", "elements": "dict", "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "root"},
                    "mode": {"type": "str", "default": "0755"},
                },
            },
            "files": {
                "type": "list", "elements": "dict", "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str", "required": True},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "root"},
                    "mode": {"type": "str", "default": "0644"},
                    "validate": {"type": "str"},
                },
            },
        },
        supports_check_mode=True,
    )
    # A command that could never run is refused before anything is written.
    for spec in module.params["files"]:
        if spec["validate"] is not None and validate_argv(spec["validate"], spec["path"]) is None:
            module.fail_json(msg=f"{spec['path']}: validate {spec['validate']!r} must name the checked file as %s "
                                 "(a literal % is written %%, quotes must be closed)")
    changed_paths, diffs = [], []
    for spec in module.params["directories"]:
        if make_directory(module, spec, changed_paths):
            changed_paths.append(spec["path"])
    for spec in module.params["files"]:
        path = spec["path"]
        if not os.path.isabs(path):
            module.fail_json(msg=f"{path}: the path must be absolute")
        uid, gid, mode = wanted_ids(module, spec)
        if not os.path.isdir(os.path.dirname(path)):
            # In check mode the task that would create it did not run.
            if not module.check_mode:
                module.fail_json(msg=f"{path}: its directory does not exist")
            current = None
        else:
            current = read_bytes(module, path)
        data = spec["content"].encode("utf-8")
        content_differs = current != data
        if not content_differs and not attributes_differ(path, uid, gid, mode):
            continue
        if not module.check_mode:
            try:
                if content_differs:
                    refused = replace(module, path, data, uid, gid, mode, spec["validate"])
                    if refused:
                        module.fail_json(msg=refused, changed=bool(changed_paths), changed_paths=changed_paths)
                else:
                    os.chown(path, uid, gid)
                    os.chmod(path, mode)
            except OSError as error:
                module.fail_json(msg=f"{path}: {error.strerror}", changed=bool(changed_paths), changed_paths=changed_paths)
        changed_paths.append(path)
        if module._diff and content_differs:
            diffs.append({"before_header": path, "after_header": path,
                          "before": "" if current is None else current.decode("utf-8", "replace"),
                          "after": spec["content"]})
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
