#!/usr/bin/env bash
# Makes the TLS files of the SASL_SSL listener that scripts/kafka.sh serves
# with SG_KAFKA_SECURE=1, with openssl and keytool, in an empty directory:
#
#   ca.pem            the CA that signs the broker's and the client's certificates
#   ca-key.pem        its key
#   broker.p12        the broker's PKCS12 keystore: its key and certificate
#                     (SAN DNS:localhost, IP:127.0.0.1) with the CA
#   truststore.p12    PKCS12 truststore with the CA: the broker accepts client
#                     certificates it signed
#   client.pem        the client's certificate (CN=<user>), signed by the CA
#   client-key.pem    its key (PEM, PKCS#8), for Go's tls.LoadX509KeyPair
#   untrusted-ca.pem  a second CA that signed nothing: a client that trusts
#                     only it must reject the broker
#
# Usage: STORE_PASS=... scripts/kafka/certs.sh DIR USER
# Keys are EC P-256; certificates are valid for 10 years.
set -euo pipefail

dir="$1"
user="$2"
: "${STORE_PASS:?STORE_PASS must hold the keystore password}"
cd "$dir"

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")

openssl req -x509 "${ec[@]}" -keyout ca-key.pem -out ca.pem -days 3650 \
  -subj "/CN=scattergather test CA" "${ca_ext[@]}"
openssl req -x509 "${ec[@]}" -keyout untrusted-ca-key.pem -out untrusted-ca.pem -days 3650 \
  -subj "/CN=scattergather untrusted CA" "${ca_ext[@]}"
rm -f untrusted-ca-key.pem

# sign NAME SUBJECT EXTENSIONS...: a key pair NAME-key.pem / NAME.pem signed by the CA.
sign() {
  local name="$1" subj="$2"
  shift 2
  openssl req "${ec[@]}" -keyout "$name-key.pem" -out "$name.csr" -subj "$subj"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$@" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days 3650 -sha256 -extfile "$name.ext" -out "$name.pem"
  rm -f "$name.csr" "$name.ext"
}

sign broker "/CN=localhost" "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1"
openssl pkcs12 -export -in broker.pem -inkey broker-key.pem -certfile ca.pem \
  -name broker -out broker.p12 -passout env:STORE_PASS
rm -f broker-key.pem broker.pem

keytool -importcert -noprompt -storetype PKCS12 -keystore truststore.p12 \
  -storepass:env STORE_PASS -alias ca -file ca.pem

sign client "/CN=$user" "extendedKeyUsage=clientAuth"
rm -f ./*.srl

chmod 600 ./*-key.pem ./*.p12
# Sanity: the chain verifies as Go will check it.
openssl verify -CAfile ca.pem client.pem
