# --- added by sbx-exec's generator (tests/unit/docs_gen.rs): context names for --ctx ---
function __sbx_exec_contexts
    set -l tokens (commandline -opc)
    set -l policy
    set -l i 1
    while test $i -lt (count $tokens)
        if test "$tokens[$i]" = --policy
            set policy --policy $tokens[(math $i + 1)]
        end
        set i (math $i + 1)
    end
    $tokens[1] policy show $policy 2>/dev/null | string match -r -g '^\s*\[context\.([a-z0-9_-]+)\]\s*$' | sort -u
end

# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_sbx_exec_global_optspecs
    string join \n policy= ctx= secrets-fd= status-fd= env= cwd= in-workdir timeout= keep-fd= listen-fd= h/help V/version
end

function __fish_sbx_exec_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_sbx_exec_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_sbx_exec_using_subcommand
    set -l cmd (__fish_sbx_exec_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l ctx -d 'Context to run in (e.g. user, platform, control)' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l secrets-fd -d 'Read secrets (JSON object or NAME=value lines) from this file descriptor (3 or more), then close it' -r
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l status-fd -d 'Write JSON status lines ({"child-pid":N}, then {"exit-code":N,"reason":R,...}; R is exited, signaled, timeout, oom, pids_limit or refused) to this file descriptor (open for writing; a record a terminal or device cannot take within 0.5 s is dropped, never waited for)' -r
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l env -d 'Set a variable for this call (repeatable); only names the context lists in env.caller, never an injection variable (LD_*, NODE_OPTIONS...) or a name it takes as a secret' -r
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l cwd -d 'Run the command in this directory instead of the current one; it must exist inside the context (e.g. under /workspace), else the call is refused (125)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l timeout -d 'Stop the command after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l keep-fd -d 'Keep this inherited file descriptor open in the command (repeatable); the kept fds are renumbered 3, 4, ... in order. When the caller\'s LISTEN_FDS/LISTEN_PID describe them, they are passed on as listening sockets with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID rewritten' -r
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l listen-fd -d 'Pass on the caller\'s socket-activation fds named NAME in LISTEN_FDNAMES (repeatable; placed before the --keep-fd ones); each must be a listening socket, and one on a reserved port only reaches a context whose `listen` names that port' -r
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -l in-workdir -d 'Start in the context\'s working directory (policy key `workdir`, default: its first existing writable area, else /), whatever the caller\'s is (what programs calling sbx-exec should pass unless they mean their own directory)'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -s V -l version -d 'Print version'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -a "file" -d 'Read, write, list or remove a file inside a context, as its identity, in its mount view (so a link its code planted never redirects a write outside what it may write); exit 0 done, 1 not there (exists), 2 usage, 3 failed (one JSON line on stderr), 125 refused'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -a "policy" -d 'Check a policy file, or show the effective policy'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -a "probe" -d 'Report what this host can isolate and whether each context can run fully, degraded or not at all; exit 0 when every context can run as written, 1 otherwise'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -a "ctx" -d 'List, stop or change the egress rules of persistent contexts (policy key persist = true); needs root'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -a "pool" -d 'Keep prepared sandboxes of the contexts with pool = N, which calls claim instead of building their own (control mode starts this itself); needs root'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -a "op" -d 'Inside a sandbox: ask the control plane to perform platform operation NAME (policy key ops) through the egress proxy (HTTP_PROXY) and print its answer; exit 0 ok, 1 the operation failed ("ok": false), 125 refused or unreachable'
complete -c sbx-exec -n "__fish_sbx_exec_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "read" -d 'Copy the file\'s contents to stdout (a link is followed inside the context)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "write" -d 'Copy stdin into the file: created, or truncated if it exists; never through a symbolic link in the last component'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "stat" -d 'Print one JSON object: type, size, mode (permission bits), mtime, mtime_nsec, uid and gid as seen inside; of a link itself, not what it names'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "ls" -d 'Print the directory\'s entries as a JSON array of {name, type, size}, sorted by name'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "exists" -d 'Exit 0 if the path exists inside the context (a link counts, even one that leads nowhere), 1 if not'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "rm" -d 'Remove a file, a link (never what it names) or an empty directory'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "mkdir" -d 'Make a directory (mode 0755 under the umask)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and not __fish_seen_subcommand_from read write stat ls exists rm mkdir help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from read" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from read" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from read" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from read" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from read" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from write" -l mode -d 'Permission bits of a new file, in octal, under the umask (default 0644); an existing file keeps its own. Setuid, setgid and sticky bits are refused' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from write" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from write" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from write" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from write" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from write" -l append -d 'Add to the end of the file instead of truncating it'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from write" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from stat" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from stat" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from stat" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from stat" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from stat" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from ls" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from ls" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from ls" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from ls" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from exists" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from exists" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from exists" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from exists" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from exists" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from rm" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from rm" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from rm" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from rm" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from rm" -s r -l recursive -d 'Remove a directory and everything in it; links inside are removed, never followed, and no other file system mounted below is entered'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from mkdir" -l ctx -d 'The context whose files these are (e.g. user, platform); before or after the operation' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from mkdir" -l status-fd -d 'Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then {"exit-code":N,"reason":R,...})' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from mkdir" -l timeout -d 'Stop the operation after this many seconds (exit 124); at most the context\'s own timeout' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from mkdir" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from mkdir" -s p -l parents -d 'Make missing parents too, and succeed if the directory exists'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from mkdir" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "read" -d 'Copy the file\'s contents to stdout (a link is followed inside the context)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "write" -d 'Copy stdin into the file: created, or truncated if it exists; never through a symbolic link in the last component'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "stat" -d 'Print one JSON object: type, size, mode (permission bits), mtime, mtime_nsec, uid and gid as seen inside; of a link itself, not what it names'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "ls" -d 'Print the directory\'s entries as a JSON array of {name, type, size}, sorted by name'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "exists" -d 'Exit 0 if the path exists inside the context (a link counts, even one that leads nowhere), 1 if not'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a file, a link (never what it names) or an empty directory'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "mkdir" -d 'Make a directory (mode 0755 under the umask)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand file; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and not __fish_seen_subcommand_from check show help" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and not __fish_seen_subcommand_from check show help" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and not __fish_seen_subcommand_from check show help" -f -a "check" -d 'Validate a policy file; exit 0 if it is valid (warnings about weak contexts go to stderr, with their line), 125 with the file, line and column if not'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and not __fish_seen_subcommand_from check show help" -f -a "show" -d 'Print the effective policy (or one context of it, `extends` resolved) and where it came from'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and not __fish_seen_subcommand_from check show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from check" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from show" -l ctx -d 'Show only this context' -r -f -a '(__sbx_exec_contexts)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from show" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate a policy file; exit 0 if it is valid (warnings about weak contexts go to stderr, with their line), 125 with the file, line and column if not'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the effective policy (or one context of it, `extends` resolved) and where it came from'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand probe" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand probe" -l json -d 'One JSON object instead of the table'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand probe" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and not __fish_seen_subcommand_from list stop net help" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and not __fish_seen_subcommand_from list stop net help" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and not __fish_seen_subcommand_from list stop net help" -f -a "list" -d 'List persistent contexts: name, keeper pid, net helper pid, processes besides the keeper, age in seconds, and whether the keeper is running (a keeper whose /run/sbx record was removed or damaged is listed too, found in /proc)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and not __fish_seen_subcommand_from list stop net help" -f -a "stop" -d 'Stop a persistent context: SIGTERM to all its processes, SIGKILL after the timeout; exit 0 when nothing of it runs any more, 1 if it was not running (a keeper whose /run/sbx record was removed or damaged is found in /proc and stopped with its net helper and cgroups)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and not __fish_seen_subcommand_from list stop net help" -f -a "net" -d 'Show or change the egress rules of a running persistent context (net = "private" with net.allow); needs root'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and not __fish_seen_subcommand_from list stop net help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from list" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from list" -l json -d 'Print a JSON array instead of a table'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from stop" -l timeout -d 'Seconds between SIGTERM and SIGKILL' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from stop" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from net" -l allow -d 'Add a rule, written as in net.allow (pypi.org, *.github.com:443, 203.0.113.0/24, db.example.com:5432); repeatable' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from net" -l deny -d 'Remove a rule that is live, as it is listed (--show); repeatable' -r
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from net" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from net" -l reset -d 'Go back to the policy\'s net.allow rules'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from net" -l show -d 'Print the live rules (what it does with no other option)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from net" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from help" -f -a "list" -d 'List persistent contexts: name, keeper pid, net helper pid, processes besides the keeper, age in seconds, and whether the keeper is running (a keeper whose /run/sbx record was removed or damaged is listed too, found in /proc)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop a persistent context: SIGTERM to all its processes, SIGKILL after the timeout; exit 0 when nothing of it runs any more, 1 if it was not running (a keeper whose /run/sbx record was removed or damaged is found in /proc and stopped with its net helper and cgroups)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from help" -f -a "net" -d 'Show or change the egress rules of a running persistent context (net = "private" with net.allow); needs root'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand ctx; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and not __fish_seen_subcommand_from serve help" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and not __fish_seen_subcommand_from serve help" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and not __fish_seen_subcommand_from serve help" -f -a "serve" -d 'Prepare and hand out the sandboxes until SIGTERM, SIGINT or SIGHUP: for each context with pool = N, N sandboxes wait ready (namespaces, mounts, network, cgroup), each for one call of that context, and are made again as calls take them. A call claims one over /run/sbx/pool-NAME-KEY.sock (root only) when it runs in root mode with the plan the sandbox was made from; otherwise, or when none is ready, it builds its own as always. SIGTERM prints how many calls it served. Exit 0 when stopped (or when no context can have a pool here), 125 if it cannot start'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and not __fish_seen_subcommand_from serve help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and __fish_seen_subcommand_from serve" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and __fish_seen_subcommand_from serve" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "serve" -d 'Prepare and hand out the sandboxes until SIGTERM, SIGINT or SIGHUP: for each context with pool = N, N sandboxes wait ready (namespaces, mounts, network, cgroup), each for one call of that context, and are made again as calls take them. A call claims one over /run/sbx/pool-NAME-KEY.sock (root only) when it runs in root mode with the plan the sandbox was made from; otherwise, or when none is ready, it builds its own as always. SIGTERM prints how many calls it served. Exit 0 when stopped (or when no context can have a pool here), 125 if it cannot start'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand op" -l policy -d 'Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file of at most 4 MiB (before or after a subcommand; refused in setuid mode)' -r -F
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand op" -s h -l help -d 'Print help'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and not __fish_seen_subcommand_from file policy probe ctx pool op help" -f -a "file" -d 'Read, write, list or remove a file inside a context, as its identity, in its mount view (so a link its code planted never redirects a write outside what it may write); exit 0 done, 1 not there (exists), 2 usage, 3 failed (one JSON line on stderr), 125 refused'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and not __fish_seen_subcommand_from file policy probe ctx pool op help" -f -a "policy" -d 'Check a policy file, or show the effective policy'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and not __fish_seen_subcommand_from file policy probe ctx pool op help" -f -a "probe" -d 'Report what this host can isolate and whether each context can run fully, degraded or not at all; exit 0 when every context can run as written, 1 otherwise'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and not __fish_seen_subcommand_from file policy probe ctx pool op help" -f -a "ctx" -d 'List, stop or change the egress rules of persistent contexts (policy key persist = true); needs root'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and not __fish_seen_subcommand_from file policy probe ctx pool op help" -f -a "pool" -d 'Keep prepared sandboxes of the contexts with pool = N, which calls claim instead of building their own (control mode starts this itself); needs root'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and not __fish_seen_subcommand_from file policy probe ctx pool op help" -f -a "op" -d 'Inside a sandbox: ask the control plane to perform platform operation NAME (policy key ops) through the egress proxy (HTTP_PROXY) and print its answer; exit 0 ok, 1 the operation failed ("ok": false), 125 refused or unreachable'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and not __fish_seen_subcommand_from file policy probe ctx pool op help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from file" -f -a "read" -d 'Copy the file\'s contents to stdout (a link is followed inside the context)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from file" -f -a "write" -d 'Copy stdin into the file: created, or truncated if it exists; never through a symbolic link in the last component'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from file" -f -a "stat" -d 'Print one JSON object: type, size, mode (permission bits), mtime, mtime_nsec, uid and gid as seen inside; of a link itself, not what it names'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from file" -f -a "ls" -d 'Print the directory\'s entries as a JSON array of {name, type, size}, sorted by name'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from file" -f -a "exists" -d 'Exit 0 if the path exists inside the context (a link counts, even one that leads nowhere), 1 if not'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from file" -f -a "rm" -d 'Remove a file, a link (never what it names) or an empty directory'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from file" -f -a "mkdir" -d 'Make a directory (mode 0755 under the umask)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "check" -d 'Validate a policy file; exit 0 if it is valid (warnings about weak contexts go to stderr, with their line), 125 with the file, line and column if not'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "show" -d 'Print the effective policy (or one context of it, `extends` resolved) and where it came from'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from ctx" -f -a "list" -d 'List persistent contexts: name, keeper pid, net helper pid, processes besides the keeper, age in seconds, and whether the keeper is running (a keeper whose /run/sbx record was removed or damaged is listed too, found in /proc)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from ctx" -f -a "stop" -d 'Stop a persistent context: SIGTERM to all its processes, SIGKILL after the timeout; exit 0 when nothing of it runs any more, 1 if it was not running (a keeper whose /run/sbx record was removed or damaged is found in /proc and stopped with its net helper and cgroups)'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from ctx" -f -a "net" -d 'Show or change the egress rules of a running persistent context (net = "private" with net.allow); needs root'
complete -c sbx-exec -n "__fish_sbx_exec_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "serve" -d 'Prepare and hand out the sandboxes until SIGTERM, SIGINT or SIGHUP: for each context with pool = N, N sandboxes wait ready (namespaces, mounts, network, cgroup), each for one call of that context, and are made again as calls take them. A call claims one over /run/sbx/pool-NAME-KEY.sock (root only) when it runs in root mode with the plan the sandbox was made from; otherwise, or when none is ready, it builds its own as always. SIGTERM prints how many calls it served. Exit 0 when stopped (or when no context can have a pool here), 125 if it cannot start'
complete -c sbx-exec -n 'test (commandline -opc)[-1] = --ctx' -f -a '(__sbx_exec_contexts)'
