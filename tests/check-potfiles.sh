#!/usr/bin/env bash
# po/POTFILES must list exactly the source files with translatable
# messages (a use of _( or N_( ), so that no message escapes translation
# and no stale entry lingers. Prints TAP.
set -u
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 1

echo "1..2"
want=$(grep -rlE '\b_\(|\bN_\(' --include='*.c' --include='*.h' src tools 2>/dev/null |
       grep -v '^src/util/ho_i18n\.h$' | LC_ALL=C sort)
have=$(grep -vE '^[[:space:]]*(#|$)' po/POTFILES 2>/dev/null | LC_ALL=C sort)

missing=$(LC_ALL=C comm -23 <(printf '%s\n' "$want") <(printf '%s\n' "$have") | sed '/^$/d')
stale=$(LC_ALL=C comm -13 <(printf '%s\n' "$want") <(printf '%s\n' "$have") | sed '/^$/d')

if [ -z "$missing" ]; then
    echo "ok 1 every file with translatable messages is in po/POTFILES"
else
    echo "not ok 1 files with translatable messages missing from po/POTFILES"
    printf '#   %s\n' $missing
fi
if [ -z "$stale" ]; then
    echo "ok 2 po/POTFILES lists no file without translatable messages"
else
    echo "not ok 2 po/POTFILES lists files without translatable messages (or missing files)"
    printf '#   %s\n' $stale
fi
