# shellcheck shell=sh
# Whether a certificate and a private key belong together (tls_cert.rs):
# prints `key_match=yes` or `key_match=no` when both files exist.
# Arguments: the certificate's path, the key's path.
cert=$1
key=$2
if [ -f "$cert" ] && [ -f "$key" ]; then
  a=$(openssl pkey -in "$key" -pubout)
  b=$(openssl x509 -in "$cert" -noout -pubkey)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then echo key_match=yes; else echo key_match=no; fi
fi
