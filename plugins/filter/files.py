# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What is on a host against what should be there, decided in one place.

Each filter takes what a role wants and the answer of the host_probe module,
and returns what write_files must do: so a converged host skips the write
task, and nothing is rendered twice (the caller renders once into `content`
or a `texts` map by path).

files_to_write: the wanted files (path, content, owner, group, mode, and
optionally validate) that are missing, not regular files, or differ in
content, owner, group or mode, as write_files takes them. The content is the
one `texts` (path -> content, rendered once) holds, else the item's own.
directories_to_make: the wanted directories that are missing or differ.
paths_present: those of the given paths the probe found (of any type), for
removal of what a role no longer wants.
json_object: a record's text (a probe's `contents` entry) as the JSON object
an earlier run wrote; None for no text, a truncated record or another type.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

from ansible.errors import AnsibleFilterError

_WRITE_FILES_KEYS = ("path", "content", "owner", "group", "mode", "validate")


def _paths_of(probe):
    try:
        return probe["paths"]
    except (KeyError, TypeError):
        raise AnsibleFilterError("expected a host_probe result with 'paths', got %r" % (type(probe).__name__,))


def _mode(mode):
    return int(str(mode), 8)


def _same_attributes(found, item, kind, default_mode):
    return (found is not None and found.get("type") == kind
            and found.get("owner") == item.get("owner", "root") and found.get("group") == item.get("group", "root")
            and found.get("mode") is not None and _mode(found["mode"]) == _mode(item.get("mode", default_mode)))


def files_to_write(wanted, probe, texts=None):
    found_paths = _paths_of(probe)
    stale = []
    for item in wanted:
        if texts is not None and item["path"] in texts:
            content = texts[item["path"]]
        elif "content" in item:
            content = item["content"]
        else:
            raise AnsibleFilterError("files_to_write: %s has no content and is not in texts" % item["path"])
        found = found_paths.get(item["path"])
        if (_same_attributes(found, item, "file", "0644")
                and found.get("sha256") == hashlib.sha256(str(content).encode("utf-8")).hexdigest()):
            continue
        entry = dict((key, item[key]) for key in _WRITE_FILES_KEYS if key in item)
        entry["content"] = content
        stale.append(entry)
    return stale


def directories_to_make(wanted, probe):
    found_paths = _paths_of(probe)
    return [dict((key, item[key]) for key in ("path", "owner", "group", "mode") if key in item)
            for item in wanted if not _same_attributes(found_paths.get(item["path"]), item, "directory", "0755")]


def paths_present(paths, probe):
    found_paths = _paths_of(probe)
    return [path for path in paths if found_paths.get(path, {}).get("type", "absent") != "absent"]


def json_object(text):
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class FilterModule(object):
    def filters(self):
        return {"files_to_write": files_to_write, "directories_to_make": directories_to_make,
                "paths_present": paths_present, "json_object": json_object}
