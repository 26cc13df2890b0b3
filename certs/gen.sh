#!/bin/sh
# Generate development TLS material for Lanyard in this directory:
#
#   ca.pem / ca.key          a throwaway development CA (ECDSA P-256, 825 days)
#   server.pem / server.key  a server certificate signed by it, for the names in
#                            CERT_HOSTS (default: localhost 127.0.0.1 ::1 lanyard)
#
# For development only: never use these for anything reachable by others. The files
# are ignored by git (.gitignore: certs/*.pem, *.key, *.crt).
#
# Usage: sh certs/gen.sh            (refuses to overwrite existing files)
#        FORCE=1 sh certs/gen.sh    (regenerate everything)
#        CERT_HOSTS="localhost lanyard.test 10.0.0.5" sh certs/gen.sh
set -eu

dir=$(cd "$(dirname "$0")" && pwd)
cd "$dir"

hosts=${CERT_HOSTS:-"localhost 127.0.0.1 ::1 lanyard"}
days=${CERT_DAYS:-825}

if [ "${FORCE:-0}" != 1 ]; then
	for f in ca.pem ca.key server.pem server.key; do
		if [ -e "$f" ]; then
			echo "certs/gen.sh: certs/$f already exists; run with FORCE=1 to regenerate" >&2
			exit 1
		fi
	done
fi

# subjectAltName: IP entries for addresses, DNS entries for names.
san=""
for h in $hosts; do
	case "$h" in
	*:* | [0-9]*.[0-9]*.[0-9]*.[0-9]*) entry="IP:$h" ;;
	*) entry="DNS:$h" ;;
	esac
	san="${san:+$san,}$entry"
done

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days "$days" \
	-subj "/O=Lanyard development/CN=Lanyard development CA" \
	-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out "$tmp/ca.pem"

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/server.key"
openssl req -new -key "$tmp/server.key" -subj "/O=Lanyard development/CN=$(echo "$hosts" | cut -d' ' -f1)" \
	-out "$tmp/server.csr"
cat >"$tmp/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
	-sha256 -days "$days" -extfile "$tmp/server.ext" -out "$tmp/server.pem" 2>/dev/null

openssl verify -CAfile "$tmp/ca.pem" "$tmp/server.pem" >/dev/null

# Move into place only once everything succeeded: keys 0600, certificates 0644.
for f in ca.key server.key; do mv "$tmp/$f" "$dir/$f"; chmod 600 "$dir/$f"; done
for f in ca.pem server.pem; do mv "$tmp/$f" "$dir/$f"; chmod 644 "$dir/$f"; done

echo "certs: wrote certs/ca.pem, certs/ca.key, certs/server.pem, certs/server.key"
echo "certs: server certificate names: $san"
echo "certs: trust certs/ca.pem in clients, e.g. curl --cacert certs/ca.pem https://localhost:8443/healthz"
