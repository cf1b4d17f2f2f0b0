# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_viber_global_optspecs
    string join \n home= gateway= token= json v/verbose h/help V/version
end

function __fish_viber_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_viber_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_viber_using_subcommand
    set -l cmd (__fish_viber_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c viber -n "__fish_viber_needs_command" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_needs_command" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_needs_command" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_needs_command" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_needs_command" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c viber -n "__fish_viber_needs_command" -s V -l version -d 'Print version'
complete -c viber -n "__fish_viber_needs_command" -f -a "init" -d 'Create VIBER_HOME: config, device key, gateway token (never overwrites)'
complete -c viber -n "__fish_viber_needs_command" -f -a "gateway" -d 'Run the gateway daemon (foreground), or start/stop it in the background'
complete -c viber -n "__fish_viber_needs_command" -f -a "status" -d 'Show the gateway, this device and health'
complete -c viber -n "__fish_viber_needs_command" -f -a "call" -d 'Call any protocol method by name'
complete -c viber -n "__fish_viber_needs_command" -f -a "watch" -d 'Stream events as they happen'
complete -c viber -n "__fish_viber_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c viber -n "__fish_viber_needs_command" -f -a "generate-docs" -d 'Regenerate man pages and completion scripts (for maintainers)'
complete -c viber -n "__fish_viber_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand init" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand init" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand init" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand init" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand init" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand init" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l bind -d 'Address to listen on [default: config gateway.bind, 127.0.0.1:7878]; port 0 picks a free one' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -f -a "start" -d 'Start the gateway in the background (no-op if one already runs)'
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -f -a "stop" -d 'Stop the running gateway (SIGTERM, then wait for it to exit)'
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l timeout -d 'How long to wait for it to accept connections' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l bind -d 'Address to listen on [default: config gateway.bind, 127.0.0.1:7878]; port 0 picks a free one' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l timeout -d 'How long to wait for it to exit' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l bind -d 'Address to listen on [default: config gateway.bind, 127.0.0.1:7878]; port 0 picks a free one' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the gateway in the background (no-op if one already runs)'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop the running gateway (SIGTERM, then wait for it to exit)'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand status" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand status" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand status" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand status" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand status" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand status" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand call" -s p -l params -d 'Params as a JSON object' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l scopes -d 'Ask for fewer scopes than this device holds (comma-separated)' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand call" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand call" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand call" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand watch" -l count -d 'Exit after printing this many events' -r
complete -c viber -n "__fish_viber_using_subcommand watch" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand watch" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand watch" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand watch" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand watch" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand watch" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand completions" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand completions" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand completions" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand completions" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand completions" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand completions" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l out-dir -d 'Directory that receives man/ and completions/' -r -F
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "init" -d 'Create VIBER_HOME: config, device key, gateway token (never overwrites)'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "gateway" -d 'Run the gateway daemon (foreground), or start/stop it in the background'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "status" -d 'Show the gateway, this device and health'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "call" -d 'Call any protocol method by name'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "watch" -d 'Stream events as they happen'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "completions" -d 'Print a shell completion script'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "generate-docs" -d 'Regenerate man pages and completion scripts (for maintainers)'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch completions generate-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from gateway" -f -a "start" -d 'Start the gateway in the background (no-op if one already runs)'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from gateway" -f -a "stop" -d 'Stop the running gateway (SIGTERM, then wait for it to exit)'
