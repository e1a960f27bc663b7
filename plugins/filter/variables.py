# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks of variables against the roles' argument specs, on the controller.

non_boolean_variables: the boolean options a host's variables set to something
that is neither a boolean nor a string Ansible's `bool` reads as one (true,
false, yes, no, on, off, 1, 0, any case); `-e name=false` is such a string.
variables_with_line_breaks: the string options whose value holds a line break.
host_setting: a host's value of a role's option, else the default of the
role's argument spec (another host's role defaults are not in hostvars): the
main entry point's, or for an option only another entry point has (such as
postgresql_backup's repository_host), that entry point's.
missing_required_variables: for the hosts of a run, "host: name" for each
variable a role of the host's groups requires (its main entry point's
`required: true` options, and one of each list the caller gives for the role,
which an argument spec cannot say) that the host does not have.

The argument specs are the one list of each role's variables and types; these
filters read them from the collection itself, so a variable added to a spec
is checked without being named here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import yaml

_ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles")
_SPELLINGS = frozenset(["true", "false", "yes", "no", "on", "off", "1", "0"])
# The string options whose value may span lines besides PEM blocks.
_MULTI_LINE = frozenset(["livekit_agents_script_content"])
_cache = {}


def spec_options(*kinds):
    """Every operator-facing option of the roles' argument specs whose type (or, for a list, whose elements'
    type) is one of `kinds`; the common role's options are other roles' parameters, not the operator's."""
    if kinds not in _cache:
        names = set()
        for path in glob.glob(os.path.join(_ROLES, "*", "meta", "argument_specs.yml")):
            with open(path) as handle:
                specs = yaml.safe_load(handle).get("argument_specs") or {}
            for entry_point in specs.values():
                for name, option in (entry_point.get("options") or {}).items():
                    kind = option.get("elements") if option.get("type") == "list" else option.get("type")
                    if kind in kinds and not name.startswith("common_"):
                        names.add(name)
        _cache[kinds] = sorted(names)
    return _cache[kinds]


def _value(variables, name):
    """The templated value, or None when it cannot be templated here (a value built from variables this host
    does not have is checked by the role that uses it)."""
    try:
        return variables[name]
    except Exception:  # pylint: disable=broad-exception-caught
        return None


def _breaks_line(value):
    return (isinstance(value, str) and not value.lstrip().startswith("-----BEGIN ")
            and ("\n" in value or "\r" in value))


def variables_with_line_breaks(variables):
    """Names of the string variables (or string list variables) whose value holds a line break: one would
    split a line of the configuration or environment file it reaches. A PEM block may span lines (the roles
    trim it), and so may the options of _MULTI_LINE."""
    found = []
    for name in spec_options("str", "path"):
        if name not in variables or name in _MULTI_LINE:
            continue
        value = _value(variables, name)
        values = value if isinstance(value, list) else [value]
        if any(_breaks_line(item) for item in values):
            found.append(name)
    return found


def non_boolean_variables(variables):
    found = []
    for name in spec_options("bool"):
        if name not in variables:
            continue
        value = _value(variables, name)
        # Only scalars are judged; a value that could not be templated here is the using role's to check.
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        if str(value).strip().lower() not in _SPELLINGS:
            found.append(name)
    return found


def _main_options(role):
    """The main entry point's options of a role of this collection."""
    if ("main", role) not in _cache:
        path = os.path.join(_ROLES, role, "meta", "argument_specs.yml")
        with open(path) as handle:
            main = (yaml.safe_load(handle).get("argument_specs") or {}).get("main") or {}
        _cache[("main", role)] = main.get("options") or {}
    return _cache[("main", role)]


def _entry_point_option(role, name):
    """A role's option as its main entry point declares it, else as the first other entry point that does."""
    if ("option", role, name) not in _cache:
        option = _main_options(role).get(name)
        if option is None:
            path = os.path.join(_ROLES, role, "meta", "argument_specs.yml")
            with open(path) as handle:
                specs = yaml.safe_load(handle).get("argument_specs") or {}
            option = next((spec["options"][name] for spec in specs.values() if name in (spec.get("options") or {})), None)
        if option is None:
            raise KeyError("role %s has no option %s" % (role, name))
        _cache[("option", role, name)] = option
    return _cache[("option", role, name)]


def _required(role):
    return [[name] for name, option in _main_options(role).items() if option.get("required")]


def host_setting(variables, role, name):
    """A host's value of a role's option, or the role's default when the host does not set it: what another
    host's role reads of this one (role defaults are not in hostvars)."""
    if name in variables:
        return variables[name]
    return _entry_point_option(role, name)["default"]


def missing_required_variables(hosts, hostvars, roles_by_group, one_of=None):
    """hosts: the run's hosts; roles_by_group: inventory group -> the roles its hosts run; one_of: role -> lists
    of variables of which the role needs one."""
    missing = []
    for host in hosts:
        variables = hostvars[host]
        roles = [role for group in variables.get("group_names", []) for role in roles_by_group.get(group, [])]
        for role in dict.fromkeys(roles):
            for names in _required(role) + [list(names) for names in (one_of or {}).get(role, [])]:
                if not any(name in variables for name in names):
                    missing.append("%s: %s" % (host, names[0]))
    return missing


class FilterModule(object):
    def filters(self):
        return {"non_boolean_variables": non_boolean_variables,
                "variables_with_line_breaks": variables_with_line_breaks,
                "missing_required_variables": missing_required_variables,
                "host_setting": host_setting}
