# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks of variables against the roles' argument specs, on the controller.

The argument specs are the one list of each role's variables and types; these
filters read them from the collection itself, so a variable added to a spec
is checked without being named here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import yaml

DOCUMENTATION = r"""
name: non_boolean_variables
short_description: Names of the boolean variables of the collection's roles whose value does not spell a boolean
description:
  - Reads every C(bool) option of every role's C(meta/argument_specs.yml) and returns, sorted, those that the
    given variables set to something other than a boolean or a string Ansible's C(bool) filter reads as one
    (C(true), C(false), C(yes), C(no), C(on), C(off), C(1), C(0), any case).
  - C(-e name=false) on the command line is the string C(false); the roles read every boolean through C(bool),
    so such a string works, and anything else is refused by the caller naming the variable.
options:
  _input:
    description: The variables of one host (C(hostvars[inventory_hostname])).
    type: dict
    required: true
"""

_ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles")
_SPELLINGS = frozenset(["true", "false", "yes", "no", "on", "off", "1", "0"])
_cache = {}


def spec_options(kind):
    """Every option of type `kind` in the roles' argument specs."""
    if kind not in _cache:
        names = set()
        for path in glob.glob(os.path.join(_ROLES, "*", "meta", "argument_specs.yml")):
            with open(path) as handle:
                specs = yaml.safe_load(handle).get("argument_specs") or {}
            for entry_point in specs.values():
                for name, option in (entry_point.get("options") or {}).items():
                    if option.get("type") == kind:
                        names.add(name)
        _cache[kind] = sorted(names)
    return _cache[kind]


def non_boolean_variables(variables):
    found = []
    for name in spec_options("bool"):
        if name not in variables:
            continue
        value = variables[name]
        if isinstance(value, bool):
            continue
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip().lower() in _SPELLINGS:
            continue
        found.append(name)
    return found


class FilterModule(object):
    def filters(self):
        return {"non_boolean_variables": non_boolean_variables}
