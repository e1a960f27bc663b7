# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What Prometheus scrapes, derived from the inventory: the monitoring role's prometheus.yml.

monitoring_host_address: the address a host's exporters listen on and are
scraped at: its exporters_listen_address, else (one host in the inventory)
127.0.0.1, else the address the firewall knows it by (firewall_host_addresses).
monitoring_address_problems: why a host's exporters have no address, or [].
monitoring_targets: every target the inventory implies, each {job, target,
host, port, variable, labels}, in the order of the jobs and then of the inventory. Ports and
addresses are read with host_setting from the owning roles' public variables
(the exporters role's ports, letta_host, livekit_prometheus_port, ...), so a
changed port moves its target and a host added to a group adds its targets.
monitoring_scrape_configs: those targets as Prometheus scrape_configs; the
probes go through the blackbox exporter of the monitoring host.
monitoring_target_problems: targets the monitoring host cannot reach (a
loopback address on another host), each a message naming the variable.
monitoring_planned_restarts: the hosts whose Letta alerts an upgrade run silences.
monitoring_livekit_secrets: {host: password} of the LiveKit metrics ports
with basic auth, for the password files Prometheus reads.
monitoring_backup_hours: each backing-up database host's allowed backup age.
monitoring_bcrypt: a bcrypt hash of a password with a salt derived from it and
a seed, so a run that changes nothing writes the same web config.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import re
import warnings
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.hybridstack.letta_livekit.plugins.filter.firewall import (
    FirewallInputError, firewall_host_addresses)
from ansible_collections.hybridstack.letta_livekit.plugins.filter.network import url_host
from ansible_collections.hybridstack.letta_livekit.plugins.filter.variables import host_setting
from ansible_collections.hybridstack.letta_livekit.plugins.test.network import loopback

# The jobs in the order prometheus.yml lists them.
JOBS = ("prometheus", "alertmanager", "node", "postgres", "pgbackrest", "redis", "nginx", "livekit",
        "probe_letta", "probe_livekit", "probe_agents", "probe_certificates")
# The exporters role's jobs: each asks for its basic auth (exporters_web_username/_password).
EXPORTER_JOBS = ("node", "postgres", "pgbackrest", "redis", "nginx")
# The blackbox exporter module each probe job uses (the monitoring role's blackbox.yml defines them).
PROBE_MODULES = {"probe_letta": "http_2xx", "probe_livekit": "http_2xx", "probe_agents": "http_2xx",
                 "probe_certificates": "tls_connect"}
# scheme, host (an IPv6 address in brackets), port of a target.
_TARGET = re.compile(r"(https?://)?(\[[^\]]+\]|[^/:]+)(?::([0-9]+))?")
_DIGITS = re.compile(r"[0-9]{1,5}")
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class MonitoringInputError(AnsibleFilterError):
    """An inventory the targets cannot be derived from; the message names the variable."""


def _setting(hostvars, host, role, name):
    return host_setting(hostvars[host], role, name)


def _port(hostvars, host, role, name):
    value = _setting(hostvars, host, role, name)
    # int() would take " 80\n": a port written as text must be digits, whole.
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        value = "%r" % value
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if isinstance(value, bool) or not 0 <= port <= 65535:
        raise MonitoringInputError("%s: %s must be a port number (got %r)"
                                   % (host, name, _setting(hostvars, host, role, name)))
    return port


def _bool(hostvars, host, role, name):
    return boolean(_setting(hostvars, host, role, name), strict=False)


def _members(groups, *names):
    """The hosts of these groups, each once, in inventory order."""
    wanted = {host for name in names for host in groups.get(name, [])}
    return [host for host in groups.get("all", []) if host in wanted]


def monitoring_host_address(host, hostvars, groups):
    given = _setting(hostvars, host, "exporters", "exporters_listen_address")
    if given:
        return str(given)
    if len(groups.get("all", [])) == 1:
        return "127.0.0.1"
    try:
        return firewall_host_addresses(host, hostvars)[0]
    except FirewallInputError as error:
        raise MonitoringInputError("%s (set exporters_listen_address for it: the address its exporters listen on "
                                   "and the monitoring host scrapes)" % error.message)


def monitoring_address_problems(host, hostvars, groups):
    """[] when the host's exporters have an address, else a message naming exporters_listen_address."""
    given = _setting(hostvars, host, "exporters", "exporters_listen_address")
    if given and _address_whole(given) is None:
        return ["%s: exporters_listen_address must be an IP address written whole (got %r)" % (host, given)]
    try:
        monitoring_host_address(host, hostvars, groups)
    except MonitoringInputError as error:
        return [str(error.message)]
    return []


def _address_whole(text):
    if not isinstance(text, str) or text != text.strip() or "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bound(address, host, hostvars, groups):
    """The address to reach a service bound to `address` at: a wildcard is the host's own address."""
    if str(address or "") in ("", "*", "0.0.0.0", "::"):
        return monitoring_host_address(host, hostvars, groups)
    return str(address)


def _target(job, host, target, variable, **labels):
    found = _TARGET.match(target)
    port = int(found.group(3)) if found.group(3) else (443 if found.group(1) == "https://" else 80)
    return {"job": job, "target": target, "host": host, "port": port, "variable": variable,
            "labels": dict(labels, host=host)}


def _exporter(job, hosts, hostvars, groups, port_name):
    return [_target(job, host, "%s:%d" % (url_host(monitoring_host_address(host, hostvars, groups)),
                                          _port(hostvars, host, "exporters", port_name)), "exporters_listen_address")
            for host in hosts]


def _backup_hosts(groups, hostvars):
    """The postgres hosts that back up: pgBackRest's exporter runs there, which knows its stanza whatever the
    repository type (a repository host of several stanzas would report each twice)."""
    return [host for host in groups.get("postgres", [])
            if _bool(hostvars, host, "postgresql_backup", "postgresql_backup_enabled")]


def _bound_target(job, host, hostvars, groups, role, address_var, port_var, form="%s:%d", **labels):
    """A target on the address `address_var` binds `role`'s service to (a wildcard: the host's own address)."""
    address = _setting(hostvars, host, role, address_var)
    if isinstance(address, (list, tuple)):
        address = address[0] if address else ""
    reached = _bound(address, host, hostvars, groups)
    return _target(job, host, form % (url_host(reached), _port(hostvars, host, role, port_var)), address_var, **labels)


def _livekit_metrics(groups, hostvars):
    return [_bound_target("livekit", host, hostvars, groups, "livekit", "livekit_bind_addresses", "livekit_prometheus_port")
            for host in groups.get("livekit", []) if _port(hostvars, host, "livekit", "livekit_prometheus_port") != 0]


def _edge_probes(job, groups, hostvars, domain_var, path):
    found = []
    for host in groups.get("edge", []):
        domain = _setting(hostvars, host, "edge", domain_var)
        if domain:
            found.append(_target(job, host, _https(domain, hostvars, host) + path, domain_var, via="edge"))
    return found


def _letta_probes(groups, hostvars):
    health = "http://%s:%d/v1/health/"
    return ([_bound_target("probe_letta", host, hostvars, groups, "letta", "letta_host", "letta_port", health,
                           via="replica") for host in groups.get("letta", [])]
            + [_bound_target("probe_letta", host, hostvars, groups, "letta_balancer", "letta_balancer_listen_address",
                             "letta_balancer_port", health, via="balancer") for host in groups.get("letta_balancer", [])]
            + _edge_probes("probe_letta", groups, hostvars, "edge_letta_domain", "/v1/health/"))


def _https(domain, hostvars, host):
    port = _port(hostvars, host, "edge", "edge_https_port")
    return "https://%s%s" % (domain, "" if port == 443 else ":%d" % port)


def _livekit_probes(groups, hostvars):
    return ([_bound_target("probe_livekit", host, hostvars, groups, "livekit", "livekit_bind_addresses", "livekit_port",
                           "http://%s:%d/", via="node") for host in groups.get("livekit", [])]
            + _edge_probes("probe_livekit", groups, hostvars, "edge_livekit_domain", "/"))


def _agent_probes(groups, hostvars):
    return [_bound_target("probe_agents", host, hostvars, groups, "livekit_agents", "livekit_agents_health_host",
                          "livekit_agents_health_port", "http://%s:%d/")
            for host in groups.get("livekit", [])
            if _bool(hostvars, host, "livekit_agents", "livekit_agents_worker_enabled")]


def _certificate_probes(groups, hostvars):
    """The certificates the collection manages and serves: the edge's names, LiveKit's own TURN/TLS, the
    pgBackRest TLS servers of repository hosts."""
    found = []
    for host in groups.get("edge", []):
        port = _port(hostvars, host, "edge", "edge_https_port")
        for name in ("edge_letta_domain", "edge_livekit_domain", "edge_turn_domain"):
            domain = _setting(hostvars, host, "edge", name)
            if domain:
                found.append(_target("probe_certificates", host, "%s:%d" % (domain, port), name))
    for host in groups.get("livekit", []):
        port = _port(hostvars, host, "livekit", "livekit_turn_tls_port")
        if (_bool(hostvars, host, "livekit", "livekit_turn_enabled") and port > 0
                and not _bool(hostvars, host, "livekit", "livekit_turn_external_tls")):
            found.append(_target("probe_certificates", host, "%s:%d" % (
                _setting(hostvars, host, "livekit", "livekit_turn_domain"), port), "livekit_turn_domain"))
    found += [_bound_target("probe_certificates", host, hostvars, groups, "postgresql_backup",
                            "postgresql_backup_tls_server_address", "postgresql_backup_tls_server_port")
              for host in groups.get("backup_repository", [])]
    return found


def monitoring_targets(groups, hostvars):
    monitors = groups.get("monitoring", [])
    everyone = _members(groups, *[name for name in groups if name not in ("all", "ungrouped")])
    targets = []
    targets += [_target("prometheus", host, "%s:%d" % (
        url_host(monitoring_host_address(host, hostvars, groups)),
        _port(hostvars, host, "monitoring", "monitoring_prometheus_port")), "exporters_listen_address")
        for host in monitors]
    targets += [_target("alertmanager", host, "%s:%d" % (
        url_host(monitoring_host_address(host, hostvars, groups)),
        _port(hostvars, host, "monitoring", "monitoring_alertmanager_port")), "exporters_listen_address")
        for host in monitors]
    targets += _exporter("node", everyone, hostvars, groups, "exporters_node_port")
    targets += _exporter("postgres", groups.get("postgres", []), hostvars, groups, "exporters_postgres_port")
    targets += _exporter("pgbackrest", _backup_hosts(groups, hostvars), hostvars, groups, "exporters_pgbackrest_port")
    targets += _exporter("redis", groups.get("redis", []), hostvars, groups, "exporters_redis_port")
    targets += _exporter("nginx", _members(groups, "edge", "letta_balancer"), hostvars, groups, "exporters_nginx_port")
    targets += _livekit_metrics(groups, hostvars)
    targets += _letta_probes(groups, hostvars)
    targets += _livekit_probes(groups, hostvars)
    targets += _agent_probes(groups, hostvars)
    targets += _certificate_probes(groups, hostvars)
    return targets


def _boxes_on_one_machine(groups, hostvars):
    """True when several hosts are all on loopback: boxes sharing one machine's network (docs/test-boxes.md),
    which reach each other there. Hosts of their own would not reach another's loopback."""
    hosts = _members(groups, *[name for name in groups if name not in ("all", "ungrouped")])
    try:
        addresses = [monitoring_host_address(host, hostvars, groups) for host in hosts]
    except MonitoringInputError:
        return False
    return len(hosts) > 1 and all(loopback(address) for address in addresses)


def monitoring_target_problems(groups, hostvars, monitor):
    """Targets `monitor` (the monitoring host) cannot reach, named by the variable that placed them there."""
    problems = []
    try:
        targets = monitoring_targets(groups, hostvars)
    except MonitoringInputError as error:
        return [str(error.message)]
    boxes = _boxes_on_one_machine(groups, hostvars)
    for item in targets:
        address = item["target"].split("://")[-1].rsplit(":", 1)[0].strip("[]")
        if item["host"] != monitor and loopback(address) and not boxes:
            problems.append("%s: %s listens on loopback (%s), which the monitoring host %s cannot reach; bind it to "
                            "an address %s reaches" % (item["host"], item["variable"], address, monitor, monitor))
    return problems


def monitoring_scrape_configs(groups, hostvars, settings):
    """settings: {blackbox: host:port of the monitoring host's blackbox exporter, secrets_dir: where the
    monitoring role keeps the password files, web_username: its own basic auth user, exporters_username: the
    exporters' basic auth user}."""
    jobs = {}
    for item in monitoring_targets(groups, hostvars):
        jobs.setdefault(item["job"], []).append(item)
    configs = []
    for job in JOBS:
        if job not in jobs:
            continue
        config = {"job_name": job,
                  "static_configs": [{"targets": [item["target"]], "labels": item["labels"]} for item in jobs[job]]}
        if job in PROBE_MODULES:
            config.update({"metrics_path": "/probe", "params": {"module": [PROBE_MODULES[job]]}, "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": settings["blackbox"]}]})
        if job in ("prometheus", "alertmanager"):
            config["basic_auth"] = {"username": settings["web_username"],
                                    "password_file": "%s/web-password" % settings["secrets_dir"]}
        if job in EXPORTER_JOBS:
            config["basic_auth"] = {"username": settings["exporters_username"],
                                    "password_file": "%s/exporters-password" % settings["secrets_dir"]}
        configs.append(config)
    # One job per LiveKit host with basic auth: each node may have its own password.
    return [item for config in configs for item in _split_livekit(config, hostvars, settings)]


def _split_livekit(config, hostvars, settings):
    if config["job_name"] != "livekit":
        return [config]
    plain, split = [], []
    for static in config["static_configs"]:
        host = static["labels"]["host"]
        username = _setting(hostvars, host, "livekit", "livekit_prometheus_username")
        if username:
            split.append({"job_name": "livekit", "static_configs": [static], "basic_auth": {
                "username": username, "password_file": "%s/livekit-%s" % (settings["secrets_dir"], host)}})
        else:
            plain.append(static)
    if split:
        # Prometheus wants job names unique: the host names the split ones.
        for item in split:
            item["job_name"] = "livekit_%s" % item["static_configs"][0]["labels"]["host"]
    return ([dict(config, static_configs=plain)] if plain else []) + split


def monitoring_planned_restarts(groups, hostvars):
    """The hosts whose Letta alerts an upgrade run silences: the Letta hosts running a release other than their
    letta_version (the letta role's letta_running_release, read before any change), and while any is, the
    balancer and edge hosts that answer for them. [] when the run upgrades nothing."""
    upgrading = [host for host in groups.get("letta", [])
                 if hostvars[host].get("letta_running_release")
                 and str(hostvars[host]["letta_running_release"]) != str(_setting(hostvars, host, "letta", "letta_version"))]
    return upgrading + [host for host in _members(groups, "letta_balancer", "edge") if host not in upgrading] if upgrading else []


def monitoring_livekit_secrets(groups, hostvars):
    """{host: password} of the LiveKit nodes whose metrics ask for basic auth (for the password files)."""
    found = {}
    for host in groups.get("livekit", []):
        if (_port(hostvars, host, "livekit", "livekit_prometheus_port") > 0
                and _setting(hostvars, host, "livekit", "livekit_prometheus_username")):
            found[host] = _setting(hostvars, host, "livekit", "livekit_prometheus_password")
    return found


def monitoring_backup_hours(groups, hostvars):
    """[{host, hours}]: each backing-up database host's own postgresql_backup_max_age_hours, which its health
    check already uses, so the alert and the health check agree."""
    found = []
    for host in _backup_hosts(groups, hostvars):
        value = _setting(hostvars, host, "postgresql_backup", "postgresql_backup_max_age_hours")
        try:
            hours = int(value)
        except (TypeError, ValueError):
            hours = 0
        if isinstance(value, bool) or hours < 1:
            raise MonitoringInputError("%s: postgresql_backup_max_age_hours must be a positive number of hours (got %r)"
                                       % (host, value))
        found.append({"host": host, "hours": hours})
    return found


def monitoring_bcrypt(password, seed, rounds=10):
    if not isinstance(password, str) or not password:
        raise MonitoringInputError("monitoring_bcrypt: the password must be a non-empty string")
    digest = hashlib.sha256(("%s\0%s" % (seed, password)).encode("utf-8")).digest()
    # bcrypt's salt is 22 characters of its alphabet; the last one carries only 2 bits.
    salt = "".join(_BCRYPT_ALPHABET[byte % 64] for byte in digest[:21]) + ".Oeu"[digest[21] % 4]
    setting = "$2b$%02d$%s" % (int(rounds), salt)
    try:
        import bcrypt  # pylint: disable=import-outside-toplevel
        return bcrypt.hashpw(password.encode("utf-8"), setting.encode("ascii")).decode("ascii")
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            # The fallback on Python < 3.13 controllers without the bcrypt package; the deprecation is known.
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # pylint: disable=import-outside-toplevel,deprecated-module
    except ImportError:
        raise MonitoringInputError("monitoring_bcrypt: install the Python package bcrypt on the controller")
    hashed = crypt.crypt(password, setting)
    if not hashed or not hashed.startswith("$2b$"):
        raise MonitoringInputError("monitoring_bcrypt: this controller's crypt has no bcrypt; install the Python "
                                   "package bcrypt on the controller")
    return hashed


_STATUS_SERVER = """# nginx's connection counters for the monitoring host's nginx exporter.
server {
    listen %s;
    server_name _;
    access_log off;
    location = %s {
        stub_status;
    }
    location / {
        return 404;
    }
}
"""


def monitoring_nginx_status_server(host, hostvars, groups, role):
    """The nginx server block serving stub_status where the nginx exporter reads it (exporters_nginx_status_url),
    written by `role` (edge or letta_balancer): by the balancer's file on a host that runs both, as one nginx;
    empty without a monitoring host."""
    if not groups.get("monitoring") or (role == "edge" and host in groups.get("letta_balancer", [])):
        return ""
    url = urlsplit(str(_setting(hostvars, host, "exporters", "exporters_nginx_status_url")))
    return _STATUS_SERVER % (url.netloc, url.path)


class FilterModule(object):
    def filters(self):
        return {"monitoring_host_address": monitoring_host_address, "monitoring_targets": monitoring_targets,
                "monitoring_scrape_configs": monitoring_scrape_configs,
                "monitoring_target_problems": monitoring_target_problems,
                "monitoring_address_problems": monitoring_address_problems,
                "monitoring_livekit_secrets": monitoring_livekit_secrets,
                "monitoring_planned_restarts": monitoring_planned_restarts,
                "monitoring_backup_hours": monitoring_backup_hours,
                "monitoring_bcrypt": monitoring_bcrypt,
                "monitoring_nginx_status_server": monitoring_nginx_status_server}
