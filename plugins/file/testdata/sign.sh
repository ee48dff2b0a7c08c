#!/usr/bin/env bash
# Makes the signed test zones (db.signed.example with NSEC, db.nsec3.example with NSEC3,
# db.nsec3opt.example with NSEC3 opt-out) from signed.template, with fresh ECDSA keys and
# signatures valid from 2026 to 2037. Needs ldns-keygen and ldns-signzone (apt-get install
# ldnsutils). The files in the repository were made by this script; neither ferrite nor Knot DNS
# checks the signatures, so regenerating them only changes key tags and signature bytes.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for z in signed.example nsec3.example nsec3opt.example; do
    sed "s/ZONE\./$z./g" signed.template > "$tmp/$z"
    ksk=$(cd "$tmp" && ldns-keygen -a ECDSAP256SHA256 -k "$z")
    zsk=$(cd "$tmp" && ldns-keygen -a ECDSAP256SHA256 "$z")
    case $z in
        signed.example) opts=() ;;
        nsec3.example) opts=(-n -t 1 -s aabbccdd) ;;
        nsec3opt.example) opts=(-n -t 0 -p) ;;
    esac
    ldns-signzone "${opts[@]}" -i 20260101000000 -e 20370101000000 -o "$z" -f "db.$z" "$tmp/$z" "$tmp/$ksk" "$tmp/$zsk"
done
