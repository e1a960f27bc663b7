#!/bin/sh
# Usage: issue-server-certificate.sh CA_DIR TLS_DIR DAYS NAME...
# Creates CA_DIR/ca.key and ca.crt when missing (a P-256 CA for ten years),
# then a fresh key and server certificate in TLS_DIR for every NAME (IP
# addresses as IP entries), with ca.crt beside them. Prints the CA certificate.
set -eu
ca_dir=$1 tls_dir=$2 days=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

if [ ! -s "$ca_dir/ca.key" ] || [ ! -s "$ca_dir/ca.crt" ]; then
    cat >"$work/ca.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = PostgreSQL CA of $(hostname)
[ca]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
    openssl req -config "$work/ca.cnf" -x509 -new -key "$work/ca.key" -days 3650 -out "$work/ca.crt"
    mv "$work/ca.key" "$ca_dir/ca.key"
    mv "$work/ca.crt" "$ca_dir/ca.crt"
fi

alt=""
for name in "$@"; do
    case "$name" in
        *:*) entry="IP:$name" ;;
        *[!0-9.]*) entry="DNS:$name" ;;
        *) entry="IP:$name" ;;
    esac
    alt="${alt:+$alt, }$entry"
done
cat >"$work/server.cnf" <<CNF
[server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $alt
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/server.key"
openssl req -new -key "$work/server.key" -subj "/CN=$1" -out "$work/server.csr"
openssl x509 -req -in "$work/server.csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" \
    -extfile "$work/server.cnf" -extensions server -out "$work/server.crt" 2>/dev/null

install -o postgres -g postgres -m 0600 "$work/server.key" "$tls_dir/server.key"
install -o root -g postgres -m 0644 "$work/server.crt" "$tls_dir/server.crt"
install -o root -g postgres -m 0644 "$ca_dir/ca.crt" "$tls_dir/ca.crt"
cat "$ca_dir/ca.crt"
