# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inbound packet filtering derived from the inventory: the firewall role's rules and status.yml's report.

firewall_rules: for one host, the inbound rules its table accepts besides
loopback, replies and ICMP (SSH from the running controller too, where
firewall_ssh_sources does not let it in already): each {service, comment, proto, port, anywhere,
sources4, sources6, peers}. `port` is "N" or "A-B"; `anywhere` true means
from every address; otherwise sources4/sources6 are the IPv4/IPv6 networks
(collapsed, a host without its /32 or /128) and `peers` the inventory hosts
or networks they come from, for the report. A rule with no source accepts
nothing but tells status.yml the port is known (e.g. the agent worker's
health port, asked on the host itself). Other roles' ports are read with
host_setting, so a changed port moves its rule.
firewall_host_addresses: the addresses a host's traffic comes from as others
see it: its firewall_addresses, else its ansible_host (else its inventory
name) when that is an IP address.
firewall_source_problems, firewall_extra_rule_problems,
firewall_address_problems, firewall_rule_problems: the firewall role's input
checks, each a list of messages naming the variable and the item.
firewall_loopback_only: whether every host of the inventory is reached on
loopback only (boxes sharing one machine's network).
firewall_controller: the SSH_CONNECTION of a session as {source, port} (the
controller's address as this host sees it, and the SSH server's port it
connected to); {} when it is not one.
firewall_accepts: whether rules accept a TCP or UDP packet from an address
to a port.
ss_listeners: the listening sockets of `ss -H -l -n -t -u -p` output.
firewall_reach: for each listener, a line saying whether the world, some
hosts (which) or nobody reaches it, and the lines of the non-loopback
listeners no rule accounts for.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.hybridstack.letta_livekit.plugins.filter.network import url_host
from ansible_collections.hybridstack.letta_livekit.plugins.filter.variables import host_setting
from ansible_collections.hybridstack.letta_livekit.plugins.test.network import loopback

_PORT = re.compile(r"[0-9]{1,5}\Z")
_PORT_RANGE = re.compile(r"([0-9]{1,5})-([0-9]{1,5})\Z")
# Goes into the rule's nft comment and the status report: no quotes, one line.
_COMMENT = re.compile(r"[A-Za-z0-9 ,._:/+-]{1,64}\Z")
_PROTOCOLS = ("tcp", "udp")
_EXTRA_RULE_KEYS = frozenset(["source", "port", "protocol", "comment"])
_SSH_CONNECTION = re.compile(r"(\S+) ([0-9]{1,5}) (\S+) ([0-9]{1,5})\Z")
# What may be meant as a host name rather than a mistyped address.
_HOST_NAME = re.compile(r"(?=.*[A-Za-z_])[A-Za-z0-9_.-]+\Z")
_SS_PROCESS = re.compile(r'users:\(\("([^"]+)"')
_WILDCARDS = frozenset(["*", "0.0.0.0", "::"])


class FirewallInputError(AnsibleFilterError):
    """An input the rules cannot be computed from; the message names the variable."""


def _plain(text):
    """A string with no whitespace anywhere (a trailing newline included), else None."""
    if not isinstance(text, str) or not text or any(char.isspace() for char in text):
        return None
    return text


def _address(text):
    """An IP address written whole (no zone, no brackets), IPv4-mapped IPv6 as IPv4; None otherwise."""
    text = _plain(text)
    if text is None or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(text):
    """(network, problem): an IP address or CIDR network written whole, or why it is not one."""
    text = _plain(text)
    if text is None or "%" in text:
        return None, "is not an IP address or CIDR network"
    try:
        return ipaddress.ip_network(text, strict=True), None
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, "is not an IP address or CIDR network"
    return None, "has host bits set (the network is %s)" % loose


def _inventory_hosts(groups):
    return list(groups.get("all", [])) if groups else []


def firewall_host_addresses(host, hostvars):
    """The addresses `host`'s traffic comes from as other hosts see it."""
    variables = hostvars[host]
    given = variables["firewall_addresses"] if "firewall_addresses" in variables else []
    if given:
        if not isinstance(given, list):
            raise FirewallInputError("%s: firewall_addresses must be a list of IP addresses (got %r)" % (host, given))
        bad = [item for item in given if _address(item) is None]
        if bad:
            raise FirewallInputError("%s: firewall_addresses must be IP addresses, each written whole; these are not: %s"
                                     % (host, ", ".join(repr(item) for item in bad)))
        return list(dict.fromkeys(str(_address(item)) for item in given))
    connect = variables["ansible_host"] if "ansible_host" in variables else host
    address = _address(connect)
    if address is None:
        raise FirewallInputError(
            "%s: its ansible_host %r is not an IP address, so the firewall cannot tell which address its traffic "
            "comes from: set firewall_addresses for it (the addresses other hosts see it connect from)" % (host, connect))
    return [str(address)]


def _names_of(host, hostvars):
    """What a setting may call a host by: its inventory name, its ansible_host, its firewall_addresses."""
    variables = hostvars[host]
    names = [host]
    if "ansible_host" in variables:
        names.append(str(variables["ansible_host"]))
    if "firewall_addresses" in variables and isinstance(variables["firewall_addresses"], list):
        names.extend(str(item) for item in variables["firewall_addresses"])
    return names


def _resolve(item, variable, inventory, hostvars):
    """(networks, label) of a source: an address, a CIDR network or an inventory host."""
    network, problem = _network(item)
    if network is not None:
        return [network], str(network)
    if isinstance(item, str) and item in inventory:
        return [ipaddress.ip_network(address) for address in firewall_host_addresses(item, hostvars)], item
    if isinstance(item, str) and _HOST_NAME.match(item):
        problem = "is neither an IP address, a CIDR network nor a host of the inventory"
    raise FirewallInputError("%s: %r %s" % (variable, item, problem))


def _peers(host, names, hostvars):
    networks, labels = [], []
    for name in dict.fromkeys(names):
        if name == host:
            continue
        networks.extend(ipaddress.ip_network(address) for address in firewall_host_addresses(name, hostvars))
        labels.append(name)
    return networks, labels


def _collapsed(networks, version):
    """The networks of one IP version, each once, without those another one covers (nft refuses overlapping
    elements in a set); a single address without its /32 or /128."""
    kept = []
    for network in sorted({network for network in networks if network.version == version},
                          key=lambda network: (network.prefixlen, network)):
        if not any(network.subnet_of(wider) for wider in kept):
            kept.append(network)
    return [str(network.network_address) if network.num_addresses == 1 else str(network) for network in sorted(kept)]


def _rule(service, comment, proto, port, networks=(), peers=(), anywhere=False):
    """A rule from `networks` (an empty list: from nobody), or from every address when `anywhere`."""
    if not _COMMENT.match(comment):
        raise FirewallInputError("firewall: the rule comment %r is not one line of plain characters" % comment)
    return {"service": service, "comment": comment, "proto": proto, "port": str(port), "anywhere": anywhere,
            "sources4": [] if anywhere else _collapsed(networks, 4),
            "sources6": [] if anywhere else _collapsed(networks, 6), "peers": [] if anywhere else list(peers)}


def _public(service, comment, proto, port):
    return _rule(service, comment, proto, port, anywhere=True)


def _from_groups(host, service, proto, port, source_groups, groups, hostvars):
    members = [name for group in source_groups for name in groups.get(group, [])]
    networks, labels = _peers(host, members, hostvars)
    return _rule(service, "%s from %s" % (service, ", ".join(source_groups)), proto, port, networks, labels)


def _setting(host, hostvars, role, name):
    return host_setting(hostvars[host], role, name)


def _int(host, hostvars, role, name):
    value = _setting(host, hostvars, role, name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FirewallInputError("%s: %s must be a port number (got %r)" % (host, name, value))


def _bool(host, hostvars, role, name):
    return boolean(_setting(host, hostvars, role, name), strict=False)


def _tls_repository_clients(host, hostvars, groups):
    """The postgres hosts whose pgBackRest repository is this host's TLS server."""
    names = set(_names_of(host, hostvars))
    return [name for name in groups.get("postgres", [])
            if _bool(name, hostvars, "postgresql_backup", "postgresql_backup_enabled")
            and _setting(name, hostvars, "postgresql_backup", "postgresql_backup_repo_type") == "tls"
            and str(_setting(name, hostvars, "postgresql_backup", "postgresql_backup_repo_host")) in names]


def _tls_repository_host(host, hostvars, groups):
    """(networks, labels) of this postgres host's TLS repository host: an inventory host (by name, ansible_host
    or firewall_addresses) or an IP address; nothing for a name outside the inventory."""
    if not (_bool(host, hostvars, "postgresql_backup", "postgresql_backup_enabled")
            and _setting(host, hostvars, "postgresql_backup", "postgresql_backup_repo_type") == "tls"):
        return [], []
    repository = str(_setting(host, hostvars, "postgresql_backup", "postgresql_backup_repo_host"))
    for name in _inventory_hosts(groups):
        if name != host and repository in _names_of(name, hostvars):
            return _peers(host, [name], hostvars)
    address = _address(repository)
    if address is not None and not address.is_loopback:
        return [ipaddress.ip_network(address)], [str(address)]
    return [], []


def _service_rules(host, hostvars, groups):
    member = {group for group, names in groups.items() if host in names}
    edge_hosts = list(groups.get("edge", []))
    rules = []
    if "postgres" in member:
        port = _int(host, hostvars, "postgresql", "postgresql_port")
        letta_networks, letta_labels = _peers(host, groups.get("letta", []), hostvars)
        repository_networks, repository_labels = _tls_repository_host(host, hostvars, groups)
        rules.append(_rule("postgresql", "postgresql from letta" + (", the backup repository" if repository_labels else ""),
                           "tcp", port, letta_networks + repository_networks, letta_labels + repository_labels))
    clients = _tls_repository_clients(host, hostvars, groups)
    if clients:
        port = _int(host, hostvars, "postgresql_backup", "postgresql_backup_tls_server_port")
        networks, labels = _peers(host, clients, hostvars)
        rules.append(_rule("pgbackrest", "pgbackrest TLS server from its postgres hosts", "tcp", port, networks, labels))
    if "redis" in member:
        rules.append(_from_groups(host, "redis", "tcp", _int(host, hostvars, "redis", "redis_port"),
                                  ["letta", "livekit"], groups, hostvars))
    if "letta" in member:
        rules.append(_from_groups(host, "letta", "tcp", _int(host, hostvars, "letta", "letta_port"),
                                  ["edge", "letta_balancer", "livekit"], groups, hostvars))
    if "letta_balancer" in member:
        port = _int(host, hostvars, "letta_balancer", "letta_balancer_port")
        # Without an edge, Letta's clients come here directly.
        rules.append(_from_groups(host, "letta_balancer", "tcp", port, ["edge", "livekit"], groups, hostvars)
                     if edge_hosts else _public("letta_balancer", "letta_balancer, public", "tcp", port))
    if "livekit" in member:
        rules.extend(_livekit_rules(host, hostvars, groups, edge_hosts))
    if "edge" in member:
        rules.append(_public("edge", "edge HTTP, public", "tcp", _int(host, hostvars, "edge", "edge_http_port")))
        rules.append(_public("edge", "edge HTTPS, public", "tcp", _int(host, hostvars, "edge", "edge_https_port")))
    rules.extend(_monitoring_rules(host, hostvars, groups))
    return rules


def _monitoring_rules(host, hostvars, groups):
    """The ports the monitoring hosts scrape or probe on this host: the monitoring filter's targets, so a target
    and its rule cannot disagree."""
    if not groups.get("monitoring"):
        return []
    # Imported here: the monitoring filter reads firewall_host_addresses from this module.
    from ansible_collections.hybridstack.letta_livekit.plugins.filter.monitoring import monitoring_targets
    ports = sorted({item["port"] for item in monitoring_targets(groups, hostvars) if item["host"] == host})
    return [_from_groups(host, "monitoring", "tcp", port, ["monitoring"], groups, hostvars) for port in ports]


def _livekit_rules(host, hostvars, groups, edge_hosts):
    def port(name):
        return _int(host, hostvars, "livekit", name)

    rules = []
    # Signal and API: through an edge when one is in front, else clients connect directly.
    rules.append(_from_groups(host, "livekit", "tcp", port("livekit_port"), ["edge", "livekit"], groups, hostvars)
                 if edge_hosts else _public("livekit", "livekit signal, public", "tcp", port("livekit_port")))
    if port("livekit_rtc_udp_port") > 0:
        rules.append(_public("livekit", "livekit media, public", "udp", port("livekit_rtc_udp_port")))
    else:
        rules.append(_public("livekit", "livekit media, public", "udp",
                             "%d-%d" % (port("livekit_rtc_port_range_start"), port("livekit_rtc_port_range_end"))))
    if port("livekit_rtc_tcp_port") > 0:
        rules.append(_public("livekit", "livekit ICE over TCP, public", "tcp", port("livekit_rtc_tcp_port")))
    if _bool(host, hostvars, "livekit", "livekit_turn_enabled"):
        if port("livekit_turn_udp_port") > 0:
            rules.append(_public("livekit", "livekit TURN/UDP, public", "udp", port("livekit_turn_udp_port")))
        if port("livekit_turn_tls_port") > 0:
            # With external TLS the port speaks plain TURN behind the edge that ends TLS for it.
            turn_edges = [name for name in edge_hosts if _setting(name, hostvars, "edge", "edge_turn_domain")]
            if turn_edges and _bool(host, hostvars, "livekit", "livekit_turn_external_tls"):
                networks, labels = _peers(host, turn_edges, hostvars)
                rules.append(_rule("livekit", "livekit TURN from edge", "tcp", port("livekit_turn_tls_port"),
                                   networks, labels))
            else:
                rules.append(_public("livekit", "livekit TURN/TLS, public", "tcp", port("livekit_turn_tls_port")))
    # LiveKit nodes talk to each other only through Redis: no node-to-node port.
    if _bool(host, hostvars, "livekit_agents", "livekit_agents_worker_enabled"):
        rules.append(_rule("livekit_agents", "livekit agent worker health, this host only", "tcp",
                           _int(host, hostvars, "livekit_agents", "livekit_agents_health_port")))
    return rules


def _extra_rule(index, item, inventory, hostvars):
    variable = "firewall_extra_rules[%d]" % index
    if not isinstance(item, dict):
        raise FirewallInputError("%s: must be a mapping {source, port, protocol} (got %r)" % (variable, item))
    unknown = sorted(set(item) - _EXTRA_RULE_KEYS)
    missing = sorted({"source", "port", "protocol"} - set(item))
    if unknown or missing:
        raise FirewallInputError("%s (%r): %s" % (variable, item, "; ".join(
            (["unknown keys %s" % ", ".join(unknown)] if unknown else [])
            + (["missing %s" % ", ".join(missing)] if missing else []))))
    protocol = item["protocol"]
    if protocol not in _PROTOCOLS:
        raise FirewallInputError("%s (%r): protocol must be tcp or udp (got %r)" % (variable, item, protocol))
    port = _port_text(item["port"])
    if port is None:
        raise FirewallInputError("%s (%r): port must be 1-65535 or a range \"A-B\" within it, A below B (got %r)"
                                 % (variable, item, item["port"]))
    comment = item.get("comment", "")
    if comment and (not isinstance(comment, str) or not _COMMENT.match(comment)):
        raise FirewallInputError("%s (%r): comment must be up to 64 letters, digits, spaces or , . _ : / + - (got %r)"
                                 % (variable, item, comment))
    label = comment or "firewall_extra_rules item %d" % index
    if item["source"] == "any":
        return _public("extra", label, protocol, port)
    networks, peer = _resolve(item["source"], variable + ".source", inventory, hostvars)
    return _rule("extra", label, protocol, port, networks, [peer])


def _port_text(value):
    """"N" or "A-B" for a port or a range of ports written whole, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 1 <= value <= 65535 else None
    if not isinstance(value, str):
        return None
    if _PORT.match(value):
        return value if 1 <= int(value) <= 65535 else None
    found = _PORT_RANGE.match(value)
    if found and 1 <= int(found.group(1)) < int(found.group(2)) <= 65535:
        return value
    return None


def _port_range(text):
    low, _dash, high = str(text).partition("-")
    return int(low), int(high or low)


def firewall_rules(host, hostvars, groups, settings):
    """settings: this host's firewall settings, {ssh_sources, ssh_port, extra_rules, controller} (controller: the
    address the running Ansible connects from, '' when unknown)."""
    inventory = _inventory_hosts(groups)
    ssh_port = settings["ssh_port"]
    networks, labels = [], []
    for item in settings.get("ssh_sources") or []:
        found, label = _resolve(item, "firewall_ssh_sources", inventory, hostvars)
        networks.extend(found)
        labels.append(label)
    rules = [_rule("ssh", "ssh from firewall_ssh_sources", "tcp", ssh_port, networks, labels)]
    controller = settings.get("controller") or ""
    if controller:
        address = _address(controller)
        if address is None:
            raise FirewallInputError("firewall: the controller's address %r (SSH_CONNECTION) is not an IP address"
                                     % (controller,))
        # Only where nothing else lets it in: a controller within firewall_ssh_sources (or on loopback) leaves
        # the rules as they are, so runs from several such controllers load nothing new.
        if not firewall_accepts(rules, str(address), ssh_port):
            rules.append(_rule("ssh", "ssh from the controller", "tcp", ssh_port, [ipaddress.ip_network(address)],
                               ["the controller (%s)" % address]))
    rules.extend(_service_rules(host, hostvars, groups))
    for index, item in enumerate(settings.get("extra_rules") or []):
        rules.append(_extra_rule(index, item, inventory, hostvars))
    return rules


def firewall_rule_problems(host, hostvars, groups, settings):
    try:
        firewall_rules(host, hostvars, groups, dict(settings, extra_rules=[], ssh_sources=[]))
    except FirewallInputError as error:
        return [str(error.message)]
    return []


def firewall_source_problems(sources, variable, groups, hostvars):
    if not isinstance(sources, list):
        return ["%s must be a list (got %r)" % (variable, sources)]
    problems = []
    for item in sources:
        try:
            _resolve(item, variable, _inventory_hosts(groups), hostvars)
        except FirewallInputError as error:
            problems.append(str(error.message))
    return problems


def firewall_extra_rule_problems(rules, groups, hostvars):
    if not isinstance(rules, list):
        return ["firewall_extra_rules must be a list (got %r)" % (rules,)]
    problems = []
    for index, item in enumerate(rules):
        try:
            _extra_rule(index, item, _inventory_hosts(groups), hostvars)
        except FirewallInputError as error:
            problems.append(str(error.message))
    return problems


def firewall_address_problems(host, hostvars):
    try:
        firewall_host_addresses(host, hostvars)
    except FirewallInputError as error:
        return [str(error.message)]
    return []


def firewall_loopback_only(groups, hostvars):
    """True when every host of the inventory is reached on loopback addresses only."""
    for host in _inventory_hosts(groups):
        try:
            addresses = firewall_host_addresses(host, hostvars)
        except FirewallInputError:
            return False
        if not all(loopback(address) for address in addresses):
            return False
    return True


def firewall_controller(ssh_connection):
    found = _SSH_CONNECTION.match(ssh_connection) if isinstance(ssh_connection, str) else None
    if not found or _address(found.group(1)) is None or not 1 <= int(found.group(4)) <= 65535:
        return {}
    return {"source": str(_address(found.group(1))), "port": int(found.group(4))}


def firewall_accepts(rules, address, port, proto="tcp"):
    source = _address(address)
    if source is None:
        return False
    if source.is_loopback:
        return True
    for rule in rules:
        low, high = _port_range(rule["port"])
        if rule["proto"] != proto or not low <= int(port) <= high:
            continue
        if rule["anywhere"] or any(source in ipaddress.ip_network(network)
                                   for network in rule["sources4"] + rule["sources6"]):
            return True
    return False


def ss_listeners(text):
    """Each listening socket once: {proto, address, interface, port, process}."""
    found = {}
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] not in _PROTOCOLS:
            continue
        address, _colon, port = fields[4].rpartition(":")
        if not port.isdigit():
            continue
        address, _percent, interface = address.partition("%")
        address = address.strip("[]")
        process = _SS_PROCESS.search(line)
        key = (fields[0], address, interface, int(port))
        if key not in found:
            found[key] = {"proto": fields[0], "address": address, "interface": interface, "port": int(port),
                          "process": process.group(1) if process else ""}
    return sorted(found.values(), key=lambda item: (item["proto"], item["port"], item["address"]))


def _on_loopback(listener):
    return listener["interface"] == "lo" or (listener["address"] not in _WILDCARDS and loopback(listener["address"]))


def firewall_reach(listeners, rules, enabled=True):
    """{listeners: one line per socket, unaccounted: one line per non-loopback socket no rule names}."""
    lines, unaccounted = [], []
    for listener in listeners:
        where = "%s %s:%s%s" % (listener["proto"], url_host(listener["address"]), listener["port"],
                                " (%s)" % listener["process"] if listener["process"] else "")
        if _on_loopback(listener):
            lines.append("%s: loopback only" % where)
            continue
        if not enabled:
            lines.append("%s: the world (firewall off)" % where)
            continue
        matching = [rule for rule in rules if rule["proto"] == listener["proto"]
                    and _port_range(rule["port"])[0] <= listener["port"] <= _port_range(rule["port"])[1]]
        services = ", ".join(dict.fromkeys(rule["comment"] for rule in matching))
        if not matching:
            lines.append("%s: nobody (no rule names this port)" % where)
            unaccounted.append("UNACCOUNTED %s: listens beyond loopback and no firewall rule names its port, so the "
                               "firewall drops it (open it with firewall_extra_rules, or bind it to loopback)" % where)
        elif any(rule["anywhere"] for rule in matching):
            lines.append("%s: the world [%s]" % (where, services))
        else:
            peers = [peer for rule in matching for peer in rule["peers"]]
            lines.append("%s: %s [%s]" % (where, "some hosts: " + ", ".join(dict.fromkeys(peers)) if peers
                                          else "nobody (the firewall drops it)", services))
    return {"listeners": lines, "unaccounted": unaccounted}


class FilterModule(object):
    def filters(self):
        return {"firewall_rules": firewall_rules, "firewall_host_addresses": firewall_host_addresses,
                "firewall_rule_problems": firewall_rule_problems,
                "firewall_source_problems": firewall_source_problems,
                "firewall_extra_rule_problems": firewall_extra_rule_problems,
                "firewall_address_problems": firewall_address_problems,
                "firewall_loopback_only": firewall_loopback_only, "firewall_controller": firewall_controller,
                "firewall_accepts": firewall_accepts, "ss_listeners": ss_listeners, "firewall_reach": firewall_reach}
