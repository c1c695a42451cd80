# bash completion for sagactl: commands, options, workflow names and instance ids.
# Install as /usr/share/bash-completion/completions/sagactl. Names and ids come from the
# daemon (through the same --socket as the command line, else $SAGA_SOCKET), so they complete
# only while sagad answers; nothing is printed when it does not.

_sagactl_query() {
  # $1: what (workflows | instances); the rest: the sagactl command and its --socket.
  local what=$1
  shift
  case $what in
    workflows) "$@" workflows list 2>/dev/null | awk 'NR == 1 { next } !NF { exit } { print $1 }' ;;
    instances) "$@" list --limit 200 2>/dev/null |
      awk 'NR == 1 && $1 != "ID" { exit } NR == 1 { next } !NF { exit } { print $1 }' ;;
  esac
}

_sagactl() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local prev=
  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  local commands="ping start inspect list retry cancel watch workflows schedules plugins stats"
  local states="running completed compensating compensated failed compensation_failed"
  local -a ctl=("${COMP_WORDS[0]}")
  local cmd= i word
  local -a args=()
  COMPREPLY=()

  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    case $word in
      --socket)
        ctl+=(--socket "${COMP_WORDS[i + 1]}")
        ((i++))
        ;;
      --socket=*) ctl+=("$word") ;;
      --input | --input-file | --id | --state | --workflow | --limit | --cursor | --from | \
        --reason | --plugins)
        ((i++))
        ;;
      -*) ;;
      *)
        if [[ -z $cmd ]]; then
          cmd=$word
        else
          args+=("$word")
        fi
        ;;
    esac
  done

  case $prev in
    --socket | --input-file)
      COMPREPLY=($(compgen -f -- "$cur"))
      return
      ;;
    --plugins)
      COMPREPLY=($(compgen -d -- "$cur"))
      return
      ;;
    --state)
      COMPREPLY=($(compgen -W "$states" -- "$cur"))
      return
      ;;
    --workflow)
      COMPREPLY=($(compgen -W "$(_sagactl_query workflows "${ctl[@]}")" -- "$cur"))
      return
      ;;
    --input | --id | --limit | --cursor | --from | --reason)
      return
      ;;
  esac

  local opts="--socket --json --help"
  case $cmd in
    start) opts+=" --input --input-file --id --wait" ;;
    inspect) opts+=" --history" ;;
    list) opts+=" --state --workflow --limit --cursor" ;;
    retry) opts+=" --from --input" ;;
    cancel) opts+=" --reason" ;;
    watch) opts+=" --workflow" ;;
    workflows) opts+=" --plugins" ;;
    stats) opts+=" --prometheus" ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return
  fi

  case $cmd in
    "") COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
    start)
      ((${#args[@]} == 0)) &&
        COMPREPLY=($(compgen -W "$(_sagactl_query workflows "${ctl[@]}")" -- "$cur"))
      ;;
    inspect | retry | cancel | watch)
      ((${#args[@]} == 0)) &&
        COMPREPLY=($(compgen -W "$(_sagactl_query instances "${ctl[@]}")" -- "$cur"))
      ;;
    schedules)
      if ((${#args[@]} == 0)); then
        COMPREPLY=($(compgen -W "list pause resume" -- "$cur"))
      elif [[ ${args[0]} != list && ${#args[@]} == 1 ]]; then
        COMPREPLY=($(compgen -W "$(_sagactl_query workflows "${ctl[@]}")" -- "$cur"))
      fi
      ;;
    workflows)
      if ((${#args[@]} == 0)); then
        COMPREPLY=($(compgen -W "list show validate" -- "$cur"))
      elif [[ ${args[0]} == show && ${#args[@]} == 1 ]]; then
        COMPREPLY=($(compgen -W "$(_sagactl_query workflows "${ctl[@]}")" -- "$cur"))
      elif [[ ${args[0]} == validate ]]; then
        COMPREPLY=($(compgen -f -X '!*.y*ml' -- "$cur") $(compgen -d -- "$cur"))
      fi
      ;;
  esac
}

complete -F _sagactl sagactl
