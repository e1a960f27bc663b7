# -*- coding: utf-8 -*-
# Copyright (c) 2026, Hybridstack Maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks of operator-given TLS files, run on the controller before any host changes.

ansible-core itself depends on the cryptography package, so the checks need
nothing on the hosts and cost no round trip.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress

from ansible.errors import AnsibleFilterError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtensionOID
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - ansible-core requires it
    HAS_CRYPTOGRAPHY = False


def _read(path, what, problems):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        problems.append("%s %s cannot be read on the controller: %s" % (what, path, error.strerror))
        return None


def _names_of(certificate):
    """DNS names and IP addresses (as text) the certificate is valid for."""
    try:
        alternative = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return set()
    names = {name.lower() for name in alternative.get_values_for_type(x509.DNSName)}
    names.update(str(address) for address in alternative.get_values_for_type(x509.IPAddress))
    return names


def _covered(name, names):
    """Whether a client connecting to `name` accepts the certificate (RFC 6125: SANs only, one-label wildcards)."""
    try:
        return str(ipaddress.ip_address(name)) in names
    except ValueError:
        pass
    name = name.lower().rstrip(".")
    if name in names:
        return True
    rest = name.partition(".")[2]
    return bool(rest) and ("*." + rest) in names


def certificate_problems(cert_path, key_path, names, ca_path="", now=None):
    """What is wrong with a server certificate, its key and its CA; an empty list when nothing is.

    cert_path, key_path, ca_path: PEM files on the controller (ca_path may be empty).
    names: the host names or addresses clients connect to; each must be covered.
    """
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("the cryptography package is missing on the controller")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    problems = []
    cert_pem = _read(cert_path, "the certificate", problems)
    key_pem = _read(key_path, "the key", problems)
    ca_pem = _read(ca_path, "the CA certificate", problems) if ca_path else None
    if problems:
        return problems
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return ["%s is not a PEM certificate" % cert_path]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return ["%s is not an unencrypted PEM private key (the server starts unattended)" % key_path]
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            certificate.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        problems.append("%s does not match the key %s" % (cert_path, key_path))
    if certificate.not_valid_after_utc <= now:
        problems.append("%s expired on %s" % (cert_path, certificate.not_valid_after_utc.date().isoformat()))
    if certificate.not_valid_before_utc > now:
        problems.append("%s is not valid before %s" % (cert_path, certificate.not_valid_before_utc.isoformat()))
    covered = _names_of(certificate)
    missing = [name for name in names if not _covered(str(name), covered)]
    if missing:
        named = ", ".join(sorted(covered)) or "nothing in subjectAltName"
        problems.append("%s does not cover %s (it names %s)" % (cert_path, ", ".join(missing), named))
    if ca_pem is not None:
        try:
            authority = x509.load_pem_x509_certificate(ca_pem)
        except ValueError:
            return problems + ["%s is not a PEM certificate" % ca_path]
        try:
            certificate.verify_directly_issued_by(authority)
        except (InvalidSignature, ValueError, TypeError):
            problems.append("%s was not issued by the CA in %s" % (cert_path, ca_path))
        if authority.not_valid_after_utc <= now:
            problems.append("%s expired on %s" % (ca_path, authority.not_valid_after_utc.date().isoformat()))
    return problems


def certificate_current(cert_pem, ca_pem, names, valid_for_seconds, now=None):
    """Whether a server certificate read from a host may stay: it parses, covers every name, is valid for at least
    valid_for_seconds more and was issued by the CA beside it. Missing text (None, empty) is not current."""
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("the cryptography package is missing on the controller")
    if not cert_pem or not ca_pem:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        certificate = x509.load_pem_x509_certificate(str(cert_pem).encode())
        authority = x509.load_pem_x509_certificate(str(ca_pem).encode())
        certificate.verify_directly_issued_by(authority)
    except (InvalidSignature, ValueError, TypeError):
        return False
    covered = _names_of(certificate)
    return (certificate.not_valid_before_utc <= now
            and certificate.not_valid_after_utc > now + datetime.timedelta(seconds=int(valid_for_seconds))
            and all(_covered(str(name), covered) for name in names))


def is_pem_certificate(text):
    """Whether text holds at least one PEM certificate that parses."""
    if not HAS_CRYPTOGRAPHY or not isinstance(text, str) or "-----BEGIN CERTIFICATE-----" not in text:
        return False
    try:
        return len(x509.load_pem_x509_certificates(text.encode())) > 0
    except ValueError:
        return False


class FilterModule(object):
    def filters(self):
        return {
            "tls_certificate_problems": certificate_problems,
            "is_pem_certificate": is_pem_certificate,
            "tls_certificate_current": certificate_current,
        }
