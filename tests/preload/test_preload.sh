#!/usr/bin/env bash
# test_preload.sh MODE BUILD_DIR — libhetmem-preload.so on this machine.
#   lifecycle  the C and C++ checks (tests/preload/*.c, cxx.cpp) under the preload, and the
#              report at exit (HETMEM_REPORT) shows hetmem's heap in use
#   config     bad configurations: one message naming the cause, the default policy, exit 0;
#              strict mode stops with status 1; config files; memkind's and autohbw's variables
#   programs   real programs: python3, sqlite3, git, g++, redis-server with redis-benchmark
#   gdb        the lifecycle checks under gdb
#   run        hetmem run: --explain, --policy, --report, exit statuses
set -uo pipefail
mode=$1 build=$2
preload="$build/src/preload/libhetmem-preload.so"
bin="$build/tests"
hetmem="$build/src/cli/hetmem"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0 out= err= rc=0 heap=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
# Runs "$@" under the preload with a report; sets $out, $err, $rc and $heap (KiB on hetmem's heap).
under() {
  rm -f "$work/report"
  HETMEM_REPORT="$work/report" LD_PRELOAD="$preload" "$@" >"$work/out" 2>"$work/err"
  rc=$?
  out=$(cat "$work/out"); err=$(cat "$work/err")
  heap=$(sed -n 's/.*hetmem heap KiB per node: N[0-9]*=\([0-9]*\).*/\1/p' "$work/report" 2>/dev/null | sort -n | tail -1)
  heap=${heap:-0}
}
expect() {  # expect CONDITION-RESULT DESCRIPTION
  if [ "$1" = 0 ]; then ok "$2"; else fail "$2"; echo "--- stdout"; echo "$out" | tail -20; echo "--- stderr"; echo "$err" | tail -20; fi
}

case "$mode" in
lifecycle)
  under "$bin/hetmem_preload_lifecycle" "$bin/libhetmem_test_dl.so"
  echo "$out"
  [ $rc = 0 ] && grep -q "malloc from .*libhetmem-preload.so" <<<"$out"; expect $? "lifecycle checks pass with malloc from the preload"
  [ "$heap" -gt 1000 ]; expect $? "the kernel counts the program's heap in hetmem's window ($heap KiB)"
  [ -z "$err" ]; expect $? "nothing on stderr"
  # The preload path has no iostreams: nothing it links may pull in libstdc++'s streams and
  # locales (0.6 MB of text, resident in every process it is loaded into).
  streams=$(nm -C "$preload" | grep -cE 'std::(basic_ios|basic_[io]?fstream|basic_[io]?stringstream|locale::)')
  [ "$streams" = 0 ]; expect $? "no iostream or locale code in the preload ($streams symbols)"
  # The code layout (src/preload/preload.order, applied when lld links the preload): malloc,
  # free and jemalloc's fast paths open the text, with the start-up code after them.
  if readelf -p .comment "$preload" 2>/dev/null | grep -q "Linker: .*LLD"; then
    text=$(readelf -SW "$preload" | sed -n 's/.* \.text *PROGBITS *\([0-9a-f]*\) .*/\1/p')
    far=
    for sym in malloc free hetmem_je_malloc hetmem_je_free; do
      a=$(nm "$preload" | awk -v s="$sym" '$3 == s { print $1; exit }')
      { [ -n "$a" ] && [ -n "$text" ] && [ $((0x$a - 0x$text)) -lt 65536 ]; } || far="$far $sym"
    done
    [ -z "$far" ]; expect $? "the preload's text opens with malloc, free and jemalloc's fast paths (preload.order)${far:+; not there:$far}"
  else
    ok "the preload was not linked by lld: no code layout to check (skipped)"
  fi
  # Start-up: with one memory node and no policy the topology is not read (the default policy is
  # the kernel's placement whatever it says: one file, has_memory); with two nodes, or a policy
  # asked for, it is. The opens are counted by strace, from outside.
  if command -v strace >/dev/null; then
    node_opens() {  # HAS_MEMORY [VAR=VALUE...]: the sysfs node files /bin/true opens at start-up
      local root="$work/root-$1"
      mkdir -p "$root/sys/devices/system/node"
      echo "$1" >"$root/sys/devices/system/node/has_memory"
      env HETMEM_SYSFS_ROOT="$root" "${@:2}" strace -f -qq -e trace=open,openat,openat2 -o "$work/trace" \
        env LD_PRELOAD="$preload" /bin/true 2>/dev/null
      grep -c 'devices/system/node' "$work/trace"
    }
    one=$(node_opens 0) two=$(node_opens 0-1) asked=$(node_opens 0 HETMEM_POLICY="any -> anywhere")
    [ "$one" = 1 ] && [ "$two" -gt 2 ] && [ "$asked" -gt 2 ]
    expect $? "start-up reads one sysfs file on one memory node without a policy ($one opens), the topology otherwise ($two with two nodes, $asked with a policy)"
    # What it reads then is what placement uses (sysfs::read_scope::placement): a hugepage pool
    # or the kernel's knobs only with HETMEM_EXPLAIN, whose notes speak of them.
    mkdir -p "$work/root-0-1/sys/devices/system/node/node1/hugepages/hugepages-2048kB" \
      "$work/root-0-1/sys/kernel/mm/mempolicy/weighted_interleave"
    echo 4 >"$work/root-0-1/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"
    echo 1 >"$work/root-0-1/sys/kernel/mm/mempolicy/weighted_interleave/node1"
    skipped_opens() { grep -c 'hugepages\|weighted_interleave' "$work/trace"; }
    node_opens 0-1 >/dev/null; light=$(skipped_opens)
    node_opens 0-1 HETMEM_EXPLAIN=1 >/dev/null; full=$(skipped_opens)
    [ "$light" = 0 ] && [ "$full" -gt 2 ]
    expect $? "start-up on two nodes leaves hugepage pools and the kernel's knobs unread ($light opens), reads them for HETMEM_EXPLAIN ($full)"
    # A sysfs attribute is one open, one read and a close: no fstat (its first read, short of
    # the buffer and not empty, is the whole file), as many reads as files.
    for n in 0 1; do
      mkdir -p "$work/root-0-1/sys/devices/system/node/node$n"
      printf '%s\n' "$n" >"$work/root-0-1/sys/devices/system/node/node$n/cpulist"
      printf 'Node %s MemTotal: 1048576 kB\n' "$n" >"$work/root-0-1/sys/devices/system/node/node$n/meminfo"
      printf '10 20\n' >"$work/root-0-1/sys/devices/system/node/node$n/distance"
    done
    env HETMEM_SYSFS_ROOT="$work/root-0-1" strace -f -qq -y -e trace=openat,openat2,read,fstat,newfstatat,statx \
      -o "$work/trace" env LD_PRELOAD="$preload" /bin/true 2>/dev/null
    stats=$(grep -cE '^[0-9 ]*(fstat|newfstatat|statx)\(.*devices/system/node' "$work/trace")
    files=$(grep -E '^[0-9 ]*openat2?\(.*devices/system/node/' "$work/trace" | grep -v O_DIRECTORY | grep -cE '\) = [0-9]')
    reads=$(grep -cE '^[0-9 ]*read\(.*devices/system/node' "$work/trace")
    [ "$stats" = 0 ] && [ "$files" -ge 7 ] && [ "$reads" = "$files" ]
    expect $? "start-up reads each sysfs file with one read and no fstat ($files files, $reads reads, $stats fstat)"
  else
    echo "SKIP start-up's sysfs reads: no strace here"
  fi
  # fork beside the preload's tiering engine with the write-protect source (a userfaultfd on
  # this process's memory): the children keep no userfaultfd (the atfork child handler closes
  # the engine's descriptors) and the parent goes on.
  HETMEM_TIERING="source=write-protect,interval=0.25,window=0.05" HETMEM_EXPLAIN=1 under "$bin/hetmem_preload_lifecycle" --forks
  if grep -q "automatic tiering on: hotness from userfaultfd" <<<"$err"; then
    [ $rc = 0 ] && grep -q "^ok   fork x30 .*keeps no userfaultfd" <<<"$out"
    expect $? "fork x30 beside the tiering engine's userfaultfd: no child keeps it"
  else
    ok "no userfaultfd write-protect source here ($(grep -m1 'tiering' <<<"$err")): fork check beside it skipped"
  fi
  under "$bin/hetmem_preload_cxx"
  echo "$out"
  [ $rc = 0 ]; expect $? "C++ operator checks pass"
  # Sizes at the edges of size_t at every entry point, and calloc's zeros over reused memory:
  # with the default policy, with tiering (allocation sites on, or off), and on glibc itself.
  # (On a one-tier machine tiering cannot start: the run says so; vm.preload runs it on two tiers.)
  for tiering in "" "source=write-protect" "source=write-protect,sites=off"; do
    HETMEM_TIERING="$tiering" under "$bin/hetmem_preload_edges"
    if [ -n "$tiering" ] && grep -q "automatic tiering not started" <<<"$err"; then
      # The checks ran, but not with tiering: said as a skip, or a failure if they failed.
      why=$(grep -o 'not started: .*' <<<"$err" | head -1)
      err=$(grep -v "automatic tiering not started" <<<"$err")
      if [ $rc = 0 ] && grep -q "^edges: 0 failure(s)" <<<"$out" && [ -z "$err" ]; then
        echo "SKIP edge sizes with HETMEM_TIERING=$tiering: tiering $why (vm.preload runs it on two tiers)"
      else
        expect 1 "edge sizes and calloc's zeros with HETMEM_TIERING=$tiering (tiering did not start)"
      fi
      continue
    fi
    [ $rc = 0 ] && grep -q "^edges: 0 failure(s)" <<<"$out" && [ -z "$err" ]
    expect $? "edge sizes and calloc's zeros${tiering:+ with HETMEM_TIERING=$tiering} ($(grep -c '^ok' <<<"$out") checks)"
  done
  "$bin/hetmem_preload_edges" --glibc >"$work/glibc" 2>&1
  expect $? "the edge-size checks pass on glibc too (but for what glibc and libstdc++ fail: $(grep -m1 '^skipped' "$work/glibc"))"
  exits=0
  for i in $(seq 20); do
    under "$bin/hetmem_preload_lifecycle" --exit-live
    [ $rc = 0 ] && [ -z "$err" ] && exits=$((exits + 1))
  done
  [ $exits = 20 ]; expect $? "exit() while four threads allocate: status 0, nothing on stderr, 20 times out of 20 ($exits)"
  under "$bin/hetmem_preload_stress" 3 8
  echo "$out"
  [ $rc = 0 ] && grep -q " 0 corruption(s), 0 failed allocation(s)" <<<"$out"
  expect $? "stress: 8 threads, mixed sizes, realloc growth, cross-thread frees, every byte checked"
  # Out of memory: under a 20 GiB address-space limit hetmem's window is 16 GiB, and large
  # blocks fill it: every entry point returns NULL with ENOMEM, nothing else is lost, and the
  # memory comes back once freed. Under 6 GiB the window cannot be reserved at all: one message
  # says so, and the program runs on glibc.
  under sh -c 'ulimit -v 20971520 && exec "$0"' "$bin/hetmem_preload_exhaust"
  echo "$out"
  [ $rc = 0 ] && grep -q " 0 failure(s)" <<<"$out" && [ "$heap" -gt 0 ] && [ -z "$err" ]
  expect $? "the window full: ENOMEM from every entry point, the rest intact, the memory back after free"
  under sh -c 'ulimit -v 6291456 && exec "$0"' "$bin/hetmem_preload_exhaust"
  [ $rc = 0 ] && grep -q " 0 failure(s)" <<<"$out" && grep -q "cannot reserve address space for hetmem's window" <<<"$err" &&
    grep -q "hetmem stays out of the way" <<<"$err"
  expect $? "no room for the window: one message naming the cause, the program runs on glibc"
  # The same checks hold for glibc itself (the checks test the interface, not hetmem's habits).
  "$bin/hetmem_preload_lifecycle" "$bin/libhetmem_test_dl.so" >"$work/glibc" 2>&1; expect $? "the lifecycle checks pass on glibc too"
  ;;
config)
  under env HETMEM_POLICY="size>=1M -> hmb" /bin/echo hello
  [ $rc = 0 ] && [ "$out" = hello ] && grep -q "column 13: unknown tier 'hmb'" <<<"$err" && grep -q "using the default policy" <<<"$err"
  expect $? "a bad policy: the program runs, one message names the token, the default is used"
  [ "$(grep -c '\^' <<<"$err")" = 1 ]; expect $? "the message points at the token with a caret"
  under env HETMEM_POLICY="hmb" HETMEM_STRICT=1 /bin/echo hello
  [ $rc = 1 ] && [ -z "$out" ] && grep -q "strict mode" <<<"$err"; expect $? "strict mode: the program stops with status 1 and the message"
  # A character device that is not devdax: refused by name, never mapped (it would be SIGBUS).
  under env HETMEM_POLICY="file /dev/zero 1G" /bin/echo hello
  [ $rc = 0 ] && [ "$out" = hello ] && grep -q "/dev/zero: a character device that is not devdax" <<<"$err" &&
    grep -q "using the default policy" <<<"$err"
  expect $? "a file tier on /dev/zero: the program runs, the message says it is not devdax, the default is used"
  under env HETMEM_POLICY="file /dev/zero 1G" HETMEM_STRICT=1 /bin/echo hello
  [ $rc = 1 ] && [ -z "$out" ] && grep -q "not devdax" <<<"$err"; expect $? "the same in strict mode: status 1 and the message"
  under env HETMEM_TIERING=interval=0 /bin/echo hello
  [ $rc = 0 ] && [ "$out" = hello ] && grep -q "HETMEM_TIERING: .*interval" <<<"$err" && grep -q "tiering stays off" <<<"$err"
  expect $? "a bad HETMEM_TIERING: named, the program runs without tiering"
  under env HETMEM_TIERING=interval=0 HETMEM_STRICT=1 /bin/echo hello
  [ $rc = 1 ] && [ -z "$out" ] && grep -q "HETMEM_TIERING: .*interval" <<<"$err" && grep -q "strict mode" <<<"$err"
  expect $? "a bad HETMEM_TIERING in strict mode: status 1 and the message"
  under env HETMEM_POLICY="strict; bind ddr; ddr" /bin/echo hello
  [ $rc = 0 ] && [ "$out" = hello ]; expect $? "strict with a good policy runs"
  printf '# job policy\nsize>=64K -> ratio local:1, ddr:1\nwatermark 90%%\nlocal\n' >"$work/p.conf"
  under env HETMEM_CONFIG="$work/p.conf" HETMEM_EXPLAIN=1 python3 -c "x=[bytearray(100000) for _ in range(200)]; print(len(x))"
  [ $rc = 0 ] && [ "$out" = 200 ] && grep -q "from HETMEM_CONFIG ($work/p.conf)" <<<"$err" && grep -q "ratio" <<<"$err"
  expect $? "HETMEM_CONFIG: a file policy, explained with its origin"
  printf 'local\nbind !\n' >"$work/bad.conf"
  under env HETMEM_CONFIG="$work/bad.conf" /bin/true
  [ $rc = 0 ] && grep -q "bad.conf:2, column 6" <<<"$err"; expect $? "a bad config file: the message names file, line and column"
  under env HETMEM_CONFIG="$work/missing.conf" /bin/true
  [ $rc = 0 ] && grep -q "cannot read $work/missing.conf" <<<"$err"; expect $? "a missing config file is named"
  under env MEMKIND_MEM_TIERS="KIND:DRAM,RATIO:1;POLICY:STATIC_RATIO" HETMEM_EXPLAIN=1 /bin/true
  [ $rc = 0 ] && grep -q "from MEMKIND_MEM_TIERS" <<<"$err"; expect $? "memkind's MEMKIND_MEM_TIERS is honoured"
  under env MEMKIND_MEM_TIERS="KIND:DRAM,RATIO:1" /bin/true
  [ $rc = 0 ] && grep -q "no POLICY" <<<"$err"; expect $? "a bad MEMKIND_MEM_TIERS is named, the program runs"
  under env AUTO_HBW_SIZE=4K HETMEM_EXPLAIN=1 /bin/true
  [ $rc = 0 ] && grep -q "from AUTO_HBW_SIZE" <<<"$err"; expect $? "autohbw's AUTO_HBW_SIZE is honoured"
  # autohbw's AUTO_HBW_LOG: at 0 and up its INFO lines, here the policy explained; below 0 silence.
  under env AUTO_HBW_SIZE=4K AUTO_HBW_LOG=0 /bin/true
  [ $rc = 0 ] && grep -q "from AUTO_HBW_SIZE" <<<"$err"; expect $? "AUTO_HBW_LOG=0 prints the policy at start"
  under env AUTO_HBW_SIZE=4K AUTO_HBW_LOG=2 /bin/true
  [ $rc = 0 ] && grep -q "AUTO_HBW_LOG=2: single allocations are not logged" <<<"$err"; expect $? "AUTO_HBW_LOG=2 says what it does not do"
  under env AUTO_HBW_SIZE=4K AUTO_HBW_LOG=-1 /bin/true
  [ $rc = 0 ] && [ -z "$err" ]; expect $? "AUTO_HBW_LOG=-1 prints nothing"
  under env AUTO_HBW_SIZE=4K AUTO_HBW_LOG=loud /bin/true
  [ $rc = 0 ] && grep -q "AUTO_HBW_LOG 'loud': not an integer" <<<"$err"; expect $? "a bad AUTO_HBW_LOG is named, the program runs"
  # 1 MiB in one environment string is past the kernel's limit for one string (128 KiB):
  # a config file of 1 MiB stands for it, and the longest string the kernel takes.
  head -c 1100000 /dev/zero | tr '\0' 'a' >"$work/huge.conf"
  under env HETMEM_CONFIG="$work/huge.conf" /bin/true
  [ $rc = 0 ] && grep -q "larger than 1 MiB" <<<"$err"; expect $? "a config file over 1 MiB: a clear error, the program runs"
  big=$(head -c 130000 /dev/zero | tr '\0' 'a')
  under env HETMEM_POLICY="$big" /bin/true
  [ $rc = 0 ] && grep -q "unknown tier 'aaaa" <<<"$err" && [ "$(wc -c <<<"$err")" -lt 2000 ]
  expect $? "a 130 KB policy string: a clear error, the program runs"
  under env HETMEM_DISABLE=1 HETMEM_POLICY=bad /bin/true
  [ $rc = 0 ] && [ -z "$err" ] && [ "$heap" = 0 ]; expect $? "HETMEM_DISABLE=1 leaves the program to glibc"
  ;;
programs)
  cd "$work" || exit 1
  cat >alloc.py <<'PY'
import json, sqlite3, threading
objs = [{"k": i, "v": str(i) * 20} for i in range(200000)]
s = json.dumps(objs); back = json.loads(s)
assert len(back) == 200000 and back[-1]["v"] == "199999" * 20
def work(n):
    d = {}
    for i in range(50000): d[i] = bytearray(n)
threads = [threading.Thread(target=work, args=(n,)) for n in (100, 1000, 10000)]
[t.start() for t in threads]; [t.join() for t in threads]
print("python ok")
PY
  # heap: what is resident in hetmem's window at exit. Small objects live in Python's own
  # arenas; what reaches malloc and stays live to the end is the JSON text (7 MiB) and the two
  # lists of 200000 pointers (3 MiB), freed only as the interpreter exits, too late for
  # jemalloc's decay. The rest (32-36 MiB here when idle, 17 MiB on a loaded CI machine) is what
  # the threads freed and jemalloc may have purged by then: not counted on.
  under python3 alloc.py
  [ $rc = 0 ] && [ "$out" = "python ok" ] && [ "$heap" -gt 8000 ]; expect $? "python3: a script that allocates ($heap KiB on hetmem's heap)"
  under sqlite3 db.sqlite "create table t(a integer primary key, b text); with recursive c(x) as (select 1 union all select x+1 from c where x < 200000) insert into t select x, hex(randomblob(40)) from c; create index tb on t(b); select count(*), sum(a) from t;"
  [ $rc = 0 ] && [ "$out" = "200000|20000100000" ]; expect $? "sqlite3: a generated database of 200000 rows, indexed and queried ($heap KiB)"
  git init -q repo && for i in $(seq 1 200); do echo "line $i $RANDOM" >"repo/f$i.txt"; done
  under sh -c 'cd repo && git add . && git -c user.name=t -c user.email=t@t commit -qm init && git gc -q && git log --oneline | wc -l && git fsck --strict 2>&1 | wc -l'
  [ $rc = 0 ] && [ "$out" = "$(printf '1\n0')" ]; expect $? "git: add, commit, gc, log, fsck on a repository"
  cat >prog.cpp <<'CPP'
#include <iostream>
#include <map>
#include <string>
int main() { std::map<int, std::string> m; for (int i = 0; i < 1000; ++i) m[i] = std::to_string(i); std::cout << m.size() << "\n"; }
CPP
  under g++ -O2 prog.cpp -o prog
  [ $rc = 0 ] && [ "$(./prog)" = 1000 ]; expect $? "g++: compiles a C++ file ($heap KiB on the compiler's hetmem heap)"
  if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    port=$((20000 + RANDOM % 20000))
    HETMEM_REPORT="$work/redis-report" LD_PRELOAD="$preload" redis-server --port $port --save "" --appendonly no \
      --daemonize no >"$work/redis.log" 2>&1 &
    rpid=$!
    for _ in $(seq 1 50); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
    under redis-benchmark -p $port -q -n 20000 -d 512 -t set,get,lpush,lpop,sadd
    bench_rc=$rc
    redis-cli -p $port set key value >/dev/null && val=$(redis-cli -p $port get key)
    redis-cli -p $port shutdown nosave >/dev/null 2>&1; wait $rpid
    rheap=$(sed -n 's/.*hetmem heap KiB per node: N[0-9]*=\([0-9]*\).*/\1/p' "$work/redis-report" | head -1)
    [ $bench_rc = 0 ] && [ "$val" = value ] && [ "$(grep -c 'requests per second' <<<"$out")" = 5 ] && [ "${rheap:-0}" -gt 1000 ]
    expect $? "redis-server and redis-benchmark, both preloaded (server heap ${rheap:-0} KiB)"
    grep "requests per second" <<<"$out" | tr '\r' '\n' | grep "requests per second" | sed 's/^/     /'
  else
    fail "redis-server / redis-benchmark not installed (scripts/setup.sh installs them)"
  fi
  ;;
gdb)
  # The signal check raises SIGUSR1 on purpose: gdb lets it through to the program's handler.
  out=$(gdb -q -batch -ex "set environment LD_PRELOAD=$preload" -ex "handle SIGUSR1 nostop noprint pass" \
        -ex run -ex "info sharedlibrary" \
        --args "$bin/hetmem_preload_lifecycle" 2>&1)
  grep -q "lifecycle: 0 failure(s)" <<<"$out" && grep -q "exited normally" <<<"$out"; expect $? "the lifecycle checks under gdb"
  ;;
valgrind)
  # Sanitizers cannot preload (their runtime must come first), so the lifecycle checks also run
  # under valgrind's memcheck. --soname-synonyms=somalloc=nouserintercepts keeps valgrind's own
  # allocator out of the preload: hetmem's malloc runs, and memcheck watches hetmem's code and
  # jemalloc's (reads of undefined values, bad system-call arguments, accesses to unmapped
  # memory or past glibc's blocks, which it tracks) and the file descriptors left open at exit.
  # It cannot see inside hetmem's blocks (to memcheck they are mapped memory), so a program's
  # use-after-free of a hetmem block is not caught here.
  if ! command -v valgrind >/dev/null; then
    fail "valgrind is not installed (scripts/setup.sh installs it)"
  else
    # vg PROGRAM ARGS...: under memcheck with the preload; rc, out, err (valgrind 3.19's note
    # about openat2, which it does not know, is dropped: the reader then falls back to openat).
    vg() {
      LIFECYCLE_GLIBC_REPLACED=1 LD_PRELOAD="$preload" valgrind -q --error-exitcode=99 --track-fds=yes \
        --soname-synonyms=somalloc=nouserintercepts "$@" >"$work/out" 2>"$work/err"
      rc=$?
      out=$(cat "$work/out")
      err=$(grep -v -e 'unhandled amd64-linux syscall: 437' -e 'write your own handler' -e 'README_MISSING_SYSCALL' \
                   -e 'Nevertheless we consider this a bug' -e 'valgrind.org/support/bug_reports' "$work/err")
    }
    # fds_left: descriptors open at exit that the process opened itself (not inherited, not 0-2).
    fds_left() {
      awk '/Open (file|AF_UNIX socket|AF_INET[0-9]* socket|pipe)[^:]* descriptor [0-9]+/ { if (d != "") print d; d = $0; next }
           d != "" && /inherited from parent/ { d = ""; next }
           END { if (d != "") print d }' <<<"$err" | grep -v 'descriptor [012]:' || true
    }
    vg "$bin/hetmem_preload_lifecycle" --overread-glibc-block
    [ $rc = 99 ] && grep -q "Invalid read of size 1" <<<"$err"
    expect $? "memcheck is on: a read past a glibc block is reported (exit 99)"
    vg "$bin/hetmem_preload_lifecycle" "$bin/libhetmem_test_dl.so"
    echo "$out" | grep -v "^ok"
    [ $rc = 0 ] && grep -q "lifecycle: 0 failure(s)" <<<"$out" && grep -q "malloc from .*libhetmem-preload.so" <<<"$out"
    expect $? "lifecycle checks under memcheck, with hetmem's malloc: no memcheck error"
    leaked=$(fds_left)
    [ -z "$leaked" ]; expect $? "no file descriptor left open by hetmem at exit${leaked:+: $leaked}"
    vg "$bin/hetmem_preload_cxx"
    [ $rc = 0 ]; expect $? "C++ operator checks under memcheck"
    vg "$bin/hetmem_preload_lifecycle" --exit-live
    [ $rc = 0 ] && [ -z "$(grep -v 'FILE DESCRIPTORS\|descriptor\|inherited from parent\|^==[0-9]*== *$' <<<"$err")" ]
    expect $? "exit() while four threads allocate, under memcheck"
    vg "$bin/hetmem_preload_stress" 2 4
    echo "$out"
    [ $rc = 0 ] && grep -q " 0 corruption(s), 0 failed allocation(s)" <<<"$out"
    expect $? "stress under memcheck: 4 threads, every byte checked"
  fi
  ;;
run)
  out=$("$hetmem" run --explain --policy "size>=1M -> local; local" -- /bin/echo ran 2>&1); rc=$?
  [ $rc = 0 ] && grep -q "^policy: from HETMEM_POLICY" <<<"$out" && grep -q '"size>=1M -> local"' <<<"$out" && grep -q "^ran$" <<<"$out"
  expect $? "hetmem run --explain prints the policy with its origin, then runs the program"
  out=$("$hetmem" run --report "$work/run-report" -- /bin/echo ran 2>&1); rc=$?
  [ $rc = 0 ] && grep -q "hetmem report: pid" "$work/run-report"; expect $? "hetmem run --report FILE"
  out=$("$hetmem" run --report stderr -- python3 -c 'print("ran")' 2>&1); rc=$?
  [ $rc = 0 ] && grep -q "hetmem report: pid" <<<"$out"; expect $? "hetmem run --report stderr"
  "$hetmem" run -- sh -c 'exit 7'; [ $? = 7 ]; expect $? "hetmem run exits with the program's status"
  "$hetmem" run -- /nonexistent/program 2>"$work/err"; [ $? = 127 ] && grep -q "cannot run /nonexistent/program" "$work/err"
  expect $? "hetmem run: a missing program is 127 with a message"
  out=$("$hetmem" run --strict --explain --policy "bind hmb" -- /bin/echo ran 2>&1); rc=$?
  [ $rc = 2 ] && ! grep -q "^ran$" <<<"$out" && grep -q "strict mode" <<<"$out"; expect $? "hetmem run --strict --explain with a bad policy does not run it (2)"
  "$hetmem" run 2>/dev/null; [ $? = 2 ]; expect $? "hetmem run without a command: usage error (2)"
  ;;
*) echo "test_preload.sh: unknown mode $mode"; exit 2 ;;
esac
echo "preload $mode: $fails failure(s)"
[ $fails = 0 ]
