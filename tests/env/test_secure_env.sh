#!/usr/bin/env bash
# test_secure_env.sh PROGRAM — HETMEM_* variables under AT_SECURE, with a real setuid binary:
# a copy of PROGRAM (tests/env/secure_env.cpp), owned by root with the setuid bit, run by the
# unprivileged user nobody. Without the bit the variables are honoured; with it, ignored.
# Needs root (to make the setuid copy) and a file system that honours setuid: otherwise the
# check says it is skipped (exit 4), never that it passed.
set -u
prog=$1
fails=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! id nobody >/dev/null 2>&1; then
  echo "SKIPPED: needs root, setpriv and the user nobody to run a real setuid binary"; exit 4
fi
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
cp "$prog" "$dir/secure_env" && chown root:root "$dir/secure_env" && chmod 4755 "$dir/secure_env"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups env "$@"; }
# Without the setuid bit (root running it): the variables are honoured.
out=$(env HETMEM_SYSFS_ROOT=/nonexistent/user-tree HETMEM_POLICY=hbm "$prog")
grep -q '^at_secure=0$' <<<"$out" && grep -q '^root=/nonexistent/user-tree$' <<<"$out" && grep -q '^policy=set$' <<<"$out" &&
  grep -q "^topology=error: cannot open sysfs root '/nonexistent/user-tree'" <<<"$out"
[ $? = 0 ] && ok "a plain program honours HETMEM_SYSFS_ROOT and HETMEM_POLICY" || { fail "plain program"; echo "$out"; }
out=$(as_nobody HETMEM_SYSFS_ROOT=/nonexistent/user-tree HETMEM_POLICY=hbm "$dir/secure_env")
if ! grep -q '^at_secure=1$' <<<"$out"; then
  echo "SKIPPED: the setuid copy did not run with AT_SECURE (a nosuid file system?): $out"; exit 4
fi
grep -q '^root=/$' <<<"$out" && grep -q '^policy=unset$' <<<"$out" && grep -q '^topology=[0-9]* nodes$' <<<"$out"
[ $? = 0 ] && ok "a setuid program run by nobody ignores HETMEM_SYSFS_ROOT and HETMEM_POLICY (reads /)" ||
  { fail "setuid program"; echo "$out"; }
echo "secure environment: $fails failure(s)"
[ $fails = 0 ]
