#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from tests/fixtures (idempotent).
set -euo pipefail
cd "$(dirname "$0")"
fx=../tests/fixtures
mkdir -p corpus/{parse_message,decrypt,pipeline,reply_roundtrip}
i=0
for f in "$fx"/messages/*.xml "$fx"/events/*.xml "$fx"/bad/* "$fx"/safe/plaintext_kat.xml "$fx"/replies/*.xml; do
  i=$((i + 1))
  cp "$f" "corpus/parse_message/fixture-$i"
  { printf '\001'; printf 'openid=o1\n'; cat "$f"; } > "corpus/pipeline/plain-$i"
  { printf '\002'; printf 'nonce=5\n'; cat "$f"; } > "corpus/pipeline/safe-$i"
  { printf '\000'; printf 'signature=0&timestamp=1700000000&nonce=1\n'; cat "$f"; } > "corpus/pipeline/raw-$i"
  head -c 200 "$f" > "corpus/reply_roundtrip/fixture-$i"
done
{ printf '\000'; tr -d '\n' < "$fx/safe/encrypt_kat.txt"; } > corpus/decrypt/kat-field
{ printf '\001'; tr -d '\n' < "$fx/safe/encrypt_kat.txt" | base64 -d; } > corpus/decrypt/kat-raw
echo "seeded: $(find corpus -type f | wc -l) files"
