# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Addresses as the roles reason about them, each rule defined once.

probe_address: the address a probe on the same host connects to for a bind
address: a wildcard is reached on loopback (an IPv6 wildcard on ::1, since a
service may bind it IPv6-only).
url_host: an address as it stands in a URL (an IPv6 address in brackets).
database_uri_fields: a postgresql://user:password@host[:port]/dbname[?query]
URI as [user, password, host, port, dbname, query] (host as written, an IPv6
address in brackets; port and query None when absent), or [] when it is not
one.
uri_host: the host of such a URI without brackets; empty when it is not one.
letta_endpoints: host:port of each Letta host of the inventory (its letta_host
and letta_port, else the letta role's defaults), as nginx in front of the
replicas names them: the edge's and the balancer's one list.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.hybridstack.letta_livekit.plugins.filter.variables import host_setting

_IPV4_WILDCARDS = frozenset(["", "*", "0.0.0.0"])
_DATABASE_URI = re.compile(
    r"postgresql://(?P<user>[^:@/\s]+):(?P<password>[^@/\s]*)@(?P<host>\[[0-9A-Fa-f:]+\]|[^:/\s@\[\]]+)"
    r"(:(?P<port>[0-9]{1,5}))?/(?P<db>[^/?#\s]+)(\?(?P<query>[^#\s]*))?")


def probe_address(address):
    address = "" if address is None else str(address)
    if address in _IPV4_WILDCARDS:
        return "127.0.0.1"
    if address == "::":
        return "::1"
    return address


def url_host(address):
    address = str(address)
    return "[" + address + "]" if ":" in address and not address.startswith("[") else address


def database_uri_fields(uri):
    found = _DATABASE_URI.fullmatch(str(uri or ""))
    return [found.group(name) for name in ("user", "password", "host", "port", "db", "query")] if found else []


def uri_host(uri):
    fields = database_uri_fields(uri)
    return fields[2].strip("[]") if fields else ""


def letta_endpoints(hosts, hostvars):
    return ["%s:%s" % (url_host(host_setting(hostvars[host], "letta", "letta_host")),
                       host_setting(hostvars[host], "letta", "letta_port")) for host in hosts]


class FilterModule(object):
    def filters(self):
        return {"probe_address": probe_address, "url_host": url_host, "uri_host": uri_host,
                "database_uri_fields": database_uri_fields, "letta_endpoints": letta_endpoints}
