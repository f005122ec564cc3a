# bash completion for hetmem — installed as share/bash-completion/completions/hetmem.
# Try it from a checkout: source scripts/completion/hetmem.bash
# tests/cli/test_completion.sh keeps the option lists equal to what `hetmem SUB --help` prints.

_hetmem_tiers="hbm ddr cxl pmem device fastest largest local"

_hetmem() {
  local cur prev words cword
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD - 1]}
  local sub="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      topo | run | stat | doctor | probe | migrate | tierd | gather) sub=${COMP_WORDS[i]}; break ;;
    esac
  done
  if [ -z "$sub" ]; then
    mapfile -t COMPREPLY < <(compgen -W "topo run stat doctor probe migrate tierd gather --help --version" -- "$cur")
    return
  fi
  # Values of the option just typed.
  case $prev in
    --root | --config | --report | --probe | --save) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --out) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
    --cgroup) mapfile -t COMPREPLY < <(compgen -d -- "${cur:-/sys/fs/cgroup/}"); return ;;
    --format) mapfile -t COMPREPLY < <(compgen -W "table tree json dot svg" -- "$cur"); return ;;
    --source) mapfile -t COMPREPLY < <(compgen -W "auto damon soft-dirty" -- "$cur"); return ;;
    --coexist) mapfile -t COMPREPLY < <(compgen -W "coexist yield force" -- "$cur"); return ;;
    --to | --from | --fast | --slow) mapfile -t COMPREPLY < <(compgen -W "$_hetmem_tiers" -- "$cur"); return ;;
    --pid) mapfile -t COMPREPLY < <(compgen -W "$(cd /proc 2> /dev/null && ls -d [0-9]* 2> /dev/null)" -- "$cur"); return ;;
    --policy | --initiator | --cpu | --kind | --range | --rate | --watch | --count | --fast-limit | --interval | \
      --threshold | --max-overhead | --duration | --nodes | --size | --threads | --time) return ;;
  esac
  local opts
  case $sub in
    topo) opts="--root --format --json --ascii --explain --initiator --cpu --kind --probe --no-hwloc --strict --help" ;;
    run)
      # After "--" the program and its arguments: complete commands, then files.
      for ((i = 2; i < COMP_CWORD; i++)); do
        if [ "${COMP_WORDS[i]}" = -- ]; then
          if [ $((i + 1)) = "$COMP_CWORD" ]; then
            mapfile -t COMPREPLY < <(compgen -c -- "$cur")
          else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
          fi
          return
        fi
      done
      opts="--policy --config --explain --strict --report --help --"
      ;;
    stat) opts="--cgroup --watch --count --json --root --help" ;;
    doctor) opts="--root --json --help" ;;
    probe) opts="--initiator --cpu --nodes --size --threads --time --latency-only --bandwidth-only --save --json --progress --help" ;;
    migrate) opts="--pid --to --from --range --all-mappings --rate --json --quiet --progress --help" ;;
    gather) opts="--out --root --help" ;;
    tierd) opts="--pid --cgroup --fast --slow --fast-limit --rate --interval --threshold --source --max-overhead --coexist --damon-takeover --duration --json --quiet --help" ;;
  esac
  if [ "$sub" = stat ] && [[ $cur != -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(cd /proc 2> /dev/null && ls -d [0-9]* 2> /dev/null)" -- "$cur")
    return
  fi
  mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
}
complete -F _hetmem hetmem
