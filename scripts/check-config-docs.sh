#!/usr/bin/env bash
# Every variable the code reads (config::*_VARIABLES) must have a row in the README's
# configuration table, and every row must name a variable the code reads.
set -euo pipefail
cd "$(dirname "$0")/.."
code=$(awk '/^pub const [A-Z_]*VARIABLES/ {on=1} on {print} on && /\];/ {on=0}' crates/core/src/config.rs | grep -o '"[A-Z_]*"' | tr -d '"' | sort -u)
docs=$(grep -E '^\| `[A-Z_]+` \|' README.md | sed -E 's/^\| `([A-Z_]+)`.*/\1/' | sort -u)
missing=$(comm -23 <(echo "$code") <(echo "$docs"))
extra=$(comm -13 <(echo "$code") <(echo "$docs"))
# Every name the code looks up must be in one of those lists (names passed to Config::build's lookup).
unlisted=$(grep -rhoE 'get\("[A-Z_]+"\)' crates/core/src/config.rs | grep -oE '[A-Z_]{3,}' | sort -u | comm -23 - <(echo "$code"))
status=0
[ -z "$missing" ] || { echo "README configuration table lacks: $missing"; status=1; }
[ -z "$extra" ] || { echo "README documents variables the code does not read: $extra"; status=1; }
[ -z "$unlisted" ] || { echo "config.rs reads variables missing from the *_VARIABLES lists: $unlisted"; status=1; }
[ $status -eq 0 ] && echo "config docs: $(echo "$code" | wc -l) variables, all documented"
exit $status
