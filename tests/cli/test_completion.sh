#!/usr/bin/env bash
# The bash completion (scripts/completion/hetmem.bash) offers every subcommand and exactly the
# options each subcommand's --help lists, and completes values where it knows them; the man
# page generated from the same --help texts renders without warnings and has every subcommand.
# Usage: test_completion.sh HETMEM COMPLETION_FILE MAN_PAGE
set -u
hetmem=$1 completion=$2 manpage=$3
fail=0 passed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
# shellcheck disable=SC1090
source "$completion"
complete_words() {  # complete_words WORD... : what _hetmem offers for the last word
  COMP_WORDS=(hetmem "$@"); COMP_CWORD=$#; COMPREPLY=()
  _hetmem
  echo "${COMPREPLY[*]}"
}
subs=$("$hetmem" --help | awk '/^Subcommands:/{s=1; next} s && /^  [a-z]/{print $1}')
[ -n "$subs" ] || bad "no subcommands in hetmem --help"
offered=$(complete_words "")
for s in $subs; do
  [[ " $offered " == *" $s "* ]] && ok "subcommand $s completes" || bad "subcommand $s missing from the completion"
  want=$("$hetmem" "$s" --help | grep -oE '^  (-[a-z],)?--[a-z-]+' | sed -E 's/^ +(-[a-z],)?//' | sort -u)
  have=$(complete_words "$s" "-" | tr ' ' '\n' | grep -E '^--[a-z]' | sort -u)
  missing=$(comm -23 <(echo "$want") <(echo "$have") | tr '\n' ' ')
  extra=$(comm -13 <(echo "$want") <(echo "$have") | tr '\n' ' ')
  [ -z "$missing$extra" ] && ok "$s: options as --help lists them" || bad "$s: completion lacks [$missing], has unknown [$extra]"
done
[ "$(complete_words topo --format t)" = "table tree" ] && ok "topo --format values" || bad "topo --format values: $(complete_words topo --format t)"
[[ " $(complete_words migrate --to c) " == *" cxl "* ]] && ok "migrate --to tiers" || bad "migrate --to"
[[ " $(complete_words stat "$$") " == *" $$ "* ]] && ok "stat completes pids" || bad "stat pid"
[[ " $(complete_words run -- tru) " == *" true "* ]] && ok "run -- completes commands" || bad "run -- command"

if command -v man > /dev/null; then
  warn=$(MANWIDTH=100 man --warnings -l "$manpage" 2>&1 > /dev/null)
  [ -z "$warn" ] && ok "man page renders without warnings" || bad "man page warnings: $warn"
  text=$(MANWIDTH=100 man -l "$manpage" 2> /dev/null)
  for s in $subs; do
    grep -q "^HETMEM ${s^^}" <<< "$text" && ok "man page has hetmem $s" || bad "man page lacks hetmem $s"
  done
  grep -q -- '--watch' <<< "$text" && ok "man page lists options" || bad "man page lacks options"
else
  echo "SKIPPED: man is not installed: the man page was not rendered"
fi
echo "completion: $passed passed, $fail failed"
[ "$fail" = 0 ]
