_sbx__exec() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="sbx__exec"
                ;;
            sbx__exec,ctx)
                cmd="sbx__exec__subcmd__ctx"
                ;;
            sbx__exec,file)
                cmd="sbx__exec__subcmd__file"
                ;;
            sbx__exec,help)
                cmd="sbx__exec__subcmd__help"
                ;;
            sbx__exec,op)
                cmd="sbx__exec__subcmd__op"
                ;;
            sbx__exec,policy)
                cmd="sbx__exec__subcmd__policy"
                ;;
            sbx__exec,pool)
                cmd="sbx__exec__subcmd__pool"
                ;;
            sbx__exec,probe)
                cmd="sbx__exec__subcmd__probe"
                ;;
            sbx__exec__subcmd__ctx,help)
                cmd="sbx__exec__subcmd__ctx__subcmd__help"
                ;;
            sbx__exec__subcmd__ctx,list)
                cmd="sbx__exec__subcmd__ctx__subcmd__list"
                ;;
            sbx__exec__subcmd__ctx,net)
                cmd="sbx__exec__subcmd__ctx__subcmd__net"
                ;;
            sbx__exec__subcmd__ctx,stop)
                cmd="sbx__exec__subcmd__ctx__subcmd__stop"
                ;;
            sbx__exec__subcmd__ctx__subcmd__help,help)
                cmd="sbx__exec__subcmd__ctx__subcmd__help__subcmd__help"
                ;;
            sbx__exec__subcmd__ctx__subcmd__help,list)
                cmd="sbx__exec__subcmd__ctx__subcmd__help__subcmd__list"
                ;;
            sbx__exec__subcmd__ctx__subcmd__help,net)
                cmd="sbx__exec__subcmd__ctx__subcmd__help__subcmd__net"
                ;;
            sbx__exec__subcmd__ctx__subcmd__help,stop)
                cmd="sbx__exec__subcmd__ctx__subcmd__help__subcmd__stop"
                ;;
            sbx__exec__subcmd__file,exists)
                cmd="sbx__exec__subcmd__file__subcmd__exists"
                ;;
            sbx__exec__subcmd__file,help)
                cmd="sbx__exec__subcmd__file__subcmd__help"
                ;;
            sbx__exec__subcmd__file,ls)
                cmd="sbx__exec__subcmd__file__subcmd__ls"
                ;;
            sbx__exec__subcmd__file,mkdir)
                cmd="sbx__exec__subcmd__file__subcmd__mkdir"
                ;;
            sbx__exec__subcmd__file,read)
                cmd="sbx__exec__subcmd__file__subcmd__read"
                ;;
            sbx__exec__subcmd__file,rm)
                cmd="sbx__exec__subcmd__file__subcmd__rm"
                ;;
            sbx__exec__subcmd__file,stat)
                cmd="sbx__exec__subcmd__file__subcmd__stat"
                ;;
            sbx__exec__subcmd__file,write)
                cmd="sbx__exec__subcmd__file__subcmd__write"
                ;;
            sbx__exec__subcmd__file__subcmd__help,exists)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__exists"
                ;;
            sbx__exec__subcmd__file__subcmd__help,help)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__help"
                ;;
            sbx__exec__subcmd__file__subcmd__help,ls)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__ls"
                ;;
            sbx__exec__subcmd__file__subcmd__help,mkdir)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__mkdir"
                ;;
            sbx__exec__subcmd__file__subcmd__help,read)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__read"
                ;;
            sbx__exec__subcmd__file__subcmd__help,rm)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__rm"
                ;;
            sbx__exec__subcmd__file__subcmd__help,stat)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__stat"
                ;;
            sbx__exec__subcmd__file__subcmd__help,write)
                cmd="sbx__exec__subcmd__file__subcmd__help__subcmd__write"
                ;;
            sbx__exec__subcmd__help,ctx)
                cmd="sbx__exec__subcmd__help__subcmd__ctx"
                ;;
            sbx__exec__subcmd__help,file)
                cmd="sbx__exec__subcmd__help__subcmd__file"
                ;;
            sbx__exec__subcmd__help,help)
                cmd="sbx__exec__subcmd__help__subcmd__help"
                ;;
            sbx__exec__subcmd__help,op)
                cmd="sbx__exec__subcmd__help__subcmd__op"
                ;;
            sbx__exec__subcmd__help,policy)
                cmd="sbx__exec__subcmd__help__subcmd__policy"
                ;;
            sbx__exec__subcmd__help,pool)
                cmd="sbx__exec__subcmd__help__subcmd__pool"
                ;;
            sbx__exec__subcmd__help,probe)
                cmd="sbx__exec__subcmd__help__subcmd__probe"
                ;;
            sbx__exec__subcmd__help__subcmd__ctx,list)
                cmd="sbx__exec__subcmd__help__subcmd__ctx__subcmd__list"
                ;;
            sbx__exec__subcmd__help__subcmd__ctx,net)
                cmd="sbx__exec__subcmd__help__subcmd__ctx__subcmd__net"
                ;;
            sbx__exec__subcmd__help__subcmd__ctx,stop)
                cmd="sbx__exec__subcmd__help__subcmd__ctx__subcmd__stop"
                ;;
            sbx__exec__subcmd__help__subcmd__file,exists)
                cmd="sbx__exec__subcmd__help__subcmd__file__subcmd__exists"
                ;;
            sbx__exec__subcmd__help__subcmd__file,ls)
                cmd="sbx__exec__subcmd__help__subcmd__file__subcmd__ls"
                ;;
            sbx__exec__subcmd__help__subcmd__file,mkdir)
                cmd="sbx__exec__subcmd__help__subcmd__file__subcmd__mkdir"
                ;;
            sbx__exec__subcmd__help__subcmd__file,read)
                cmd="sbx__exec__subcmd__help__subcmd__file__subcmd__read"
                ;;
            sbx__exec__subcmd__help__subcmd__file,rm)
                cmd="sbx__exec__subcmd__help__subcmd__file__subcmd__rm"
                ;;
            sbx__exec__subcmd__help__subcmd__file,stat)
                cmd="sbx__exec__subcmd__help__subcmd__file__subcmd__stat"
                ;;
            sbx__exec__subcmd__help__subcmd__file,write)
                cmd="sbx__exec__subcmd__help__subcmd__file__subcmd__write"
                ;;
            sbx__exec__subcmd__help__subcmd__policy,check)
                cmd="sbx__exec__subcmd__help__subcmd__policy__subcmd__check"
                ;;
            sbx__exec__subcmd__help__subcmd__policy,show)
                cmd="sbx__exec__subcmd__help__subcmd__policy__subcmd__show"
                ;;
            sbx__exec__subcmd__help__subcmd__pool,serve)
                cmd="sbx__exec__subcmd__help__subcmd__pool__subcmd__serve"
                ;;
            sbx__exec__subcmd__policy,check)
                cmd="sbx__exec__subcmd__policy__subcmd__check"
                ;;
            sbx__exec__subcmd__policy,help)
                cmd="sbx__exec__subcmd__policy__subcmd__help"
                ;;
            sbx__exec__subcmd__policy,show)
                cmd="sbx__exec__subcmd__policy__subcmd__show"
                ;;
            sbx__exec__subcmd__policy__subcmd__help,check)
                cmd="sbx__exec__subcmd__policy__subcmd__help__subcmd__check"
                ;;
            sbx__exec__subcmd__policy__subcmd__help,help)
                cmd="sbx__exec__subcmd__policy__subcmd__help__subcmd__help"
                ;;
            sbx__exec__subcmd__policy__subcmd__help,show)
                cmd="sbx__exec__subcmd__policy__subcmd__help__subcmd__show"
                ;;
            sbx__exec__subcmd__pool,help)
                cmd="sbx__exec__subcmd__pool__subcmd__help"
                ;;
            sbx__exec__subcmd__pool,serve)
                cmd="sbx__exec__subcmd__pool__subcmd__serve"
                ;;
            sbx__exec__subcmd__pool__subcmd__help,help)
                cmd="sbx__exec__subcmd__pool__subcmd__help__subcmd__help"
                ;;
            sbx__exec__subcmd__pool__subcmd__help,serve)
                cmd="sbx__exec__subcmd__pool__subcmd__help__subcmd__serve"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        sbx__exec)
            opts="-h -V --policy --ctx --secrets-fd --status-fd --env --cwd --in-workdir --timeout --keep-fd --listen-fd --help --version file policy probe ctx pool op help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secrets-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --env)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cwd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --keep-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --listen-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx)
            opts="-h --policy --help list stop net help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__help)
            opts="list stop net help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__help__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__help__subcmd__net)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__help__subcmd__stop)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__list)
            opts="-h --json --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__net)
            opts="-h --allow --deny --reset --show --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --allow)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --deny)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__ctx__subcmd__stop)
            opts="-h --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file)
            opts="-h --ctx --status-fd --timeout --policy --help read write stat ls exists rm mkdir help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__exists)
            opts="-h --ctx --status-fd --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help)
            opts="read write stat ls exists rm mkdir help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__exists)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__ls)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__mkdir)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__read)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__rm)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__stat)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__help__subcmd__write)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__ls)
            opts="-h --ctx --status-fd --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__mkdir)
            opts="-p -h --parents --ctx --status-fd --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__read)
            opts="-h --ctx --status-fd --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__rm)
            opts="-r -h --recursive --ctx --status-fd --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__stat)
            opts="-h --ctx --status-fd --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__file__subcmd__write)
            opts="-h --append --mode --ctx --status-fd --timeout --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --mode)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --status-fd)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help)
            opts="file policy probe ctx pool op help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__ctx)
            opts="list stop net"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__ctx__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__ctx__subcmd__net)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__ctx__subcmd__stop)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file)
            opts="read write stat ls exists rm mkdir"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file__subcmd__exists)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file__subcmd__ls)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file__subcmd__mkdir)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file__subcmd__read)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file__subcmd__rm)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file__subcmd__stat)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__file__subcmd__write)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__op)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__policy)
            opts="check show"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__policy__subcmd__check)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__policy__subcmd__show)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__pool)
            opts="serve"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__pool__subcmd__serve)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__help__subcmd__probe)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__op)
            opts="-h --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__policy)
            opts="-h --policy --help check show help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__policy__subcmd__check)
            opts="-h --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__policy__subcmd__help)
            opts="check show help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__policy__subcmd__help__subcmd__check)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__policy__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__policy__subcmd__help__subcmd__show)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__policy__subcmd__show)
            opts="-h --ctx --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ctx)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__pool)
            opts="-h --policy --help serve help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__pool__subcmd__help)
            opts="serve help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__pool__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__pool__subcmd__help__subcmd__serve)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__pool__subcmd__serve)
            opts="-h --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        sbx__exec__subcmd__probe)
            opts="-h --json --policy --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _sbx__exec -o nosort -o bashdefault -o default sbx-exec
else
    complete -F _sbx__exec -o bashdefault -o default sbx-exec
fi

# --- added by sbx-exec's generator (tests/unit/docs_gen.rs): context names for --ctx, ctx stop and ctx net ---
_sbx_exec_contexts() {
    local prog="$1" policy="$2"
    local -a args=()
    [[ -n "$policy" ]] && args=(--policy "$policy")
    "$prog" policy show "${args[@]}" 2>/dev/null \
        | sed -n 's/^[[:space:]]*\[context\.\([a-z0-9_-]*\)\][[:space:]]*$/\1/p' \
        | sort -u
}

_sbx_exec_running() {
    "$1" ctx list --json 2>/dev/null \
        | grep -o '"name":"[a-z0-9_-]*"' \
        | sed 's/^"name":"\(.*\)"$/\1/' \
        | sort -u
}

_sbx_exec_with_contexts() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" i w policy="" launch=0 skip=0
    local -a subs=()
    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    for (( i = 1; i < COMP_CWORD; i++ )); do
        w="${COMP_WORDS[i]}"
        [[ "$w" == "--" ]] && { _sbx__exec "$@"; return; }
        [[ "$w" == "--policy" ]] && policy="${COMP_WORDS[i+1]}"
        [[ "$w" == --policy=* ]] && policy="${w#--policy=}"
        if (( skip )); then
            skip=0
            continue
        fi
        case "$w" in
            --allow|--ctx|--cwd|--deny|--env|--keep-fd|--listen-fd|--mode|--policy|--secrets-fd|--status-fd|--timeout)
                skip=1
                [[ "$w" != "--policy" && ${#subs[@]} -eq 0 ]] && launch=1
                ;;
            --policy=*) ;;
            -*) [[ ${#subs[@]} -eq 0 ]] && launch=1 ;;
            *) subs+=("$w") ;;
        esac
    done
    local prefix="" names name
    if [[ "$prev" != "--ctx" && "$cur" == --ctx=* ]]; then
        prefix="--ctx="
        cur="${cur#--ctx=}"
    elif [[ "$prev" == "--ctx" ]]; then
        :
    elif (( ! launch )) && [[ "${subs[0]}" == "ctx" && ( "${subs[1]}" == "stop" || "${subs[1]}" == "net" ) \
            && ${#subs[@]} -eq 2 && "$cur" != -* && "$prev" != "--timeout" && "$prev" != "--policy" \
            && "$prev" != "--allow" && "$prev" != "--deny" ]]; then
        COMPREPLY=()
        for name in $(_sbx_exec_running "${COMP_WORDS[0]}"); do
            [[ "$name" == "$cur"* ]] && COMPREPLY+=("$name")
        done
        (( ${#COMPREPLY[@]} )) || _sbx__exec "$@"
        return
    else
        _sbx__exec "$@"
        return
    fi
    names="$(_sbx_exec_contexts "${COMP_WORDS[0]}" "${policy/#\~/$HOME}")"
    COMPREPLY=()
    for name in $names; do
        [[ "$name" == "$cur"* ]] && COMPREPLY+=("$prefix$name")
    done
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _sbx_exec_with_contexts -o nosort -o bashdefault -o default sbx-exec
else
    complete -F _sbx_exec_with_contexts -o bashdefault -o default sbx-exec
fi
