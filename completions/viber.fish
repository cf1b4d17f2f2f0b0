# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_viber_global_optspecs
    string join \n home= gateway= token= json key= v/verbose h/help V/version
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
complete -c viber -n "__fish_viber_needs_command" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_needs_command" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_needs_command" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c viber -n "__fish_viber_needs_command" -s V -l version -d 'Print version'
complete -c viber -n "__fish_viber_needs_command" -f -a "init" -d 'Create VIBER_HOME: config, device key, gateway token (never overwrites)'
complete -c viber -n "__fish_viber_needs_command" -f -a "gateway" -d 'Run the gateway daemon (foreground), or start/stop it in the background'
complete -c viber -n "__fish_viber_needs_command" -f -a "status" -d 'Show the gateway, this device and health'
complete -c viber -n "__fish_viber_needs_command" -f -a "call" -d 'Call any protocol method by name'
complete -c viber -n "__fish_viber_needs_command" -f -a "watch" -d 'Stream events as they happen'
complete -c viber -n "__fish_viber_needs_command" -f -a "pair" -d 'Pair this device with a gateway, or approve, list, revoke and trust devices'
complete -c viber -n "__fish_viber_needs_command" -f -a "run" -d 'Start a run from a task file (or --goal) and follow it to its outcome'
complete -c viber -n "__fish_viber_needs_command" -f -a "runs" -d 'List runs, queued ones included'
complete -c viber -n "__fish_viber_needs_command" -f -a "verify" -d 'Check a signed report offline: signature, evidence hashes, verdicts (--rerun repeats the checks)'
complete -c viber -n "__fish_viber_needs_command" -f -a "report" -d 'Render a run\'s report as Markdown, JSON or JUnit XML; print the gateway\'s allowed_signers line'
complete -c viber -n "__fish_viber_needs_command" -f -a "node" -d 'Execute one run as a worker (started by the gateway)'
complete -c viber -n "__fish_viber_needs_command" -f -a "chat" -d 'Steer a live run: feedback, pause, resume, cancel, rescope, reprioritize'
complete -c viber -n "__fish_viber_needs_command" -f -a "approve" -d 'List actions waiting for approval, or answer one'
complete -c viber -n "__fish_viber_needs_command" -f -a "policy" -d 'Check what the autonomy policy does with a command'
complete -c viber -n "__fish_viber_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c viber -n "__fish_viber_needs_command" -f -a "generate-docs" -d 'Regenerate man pages and completion scripts (for maintainers)'
complete -c viber -n "__fish_viber_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand init" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand init" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand init" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand init" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand init" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand init" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand init" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l bind -d 'Address to listen on [default: config gateway.bind, 127.0.0.1:7878]; port 0 picks a free one' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and not __fish_seen_subcommand_from start stop help" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
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
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l timeout -d 'How long to wait for it to exit' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l bind -d 'Address to listen on [default: config gateway.bind, 127.0.0.1:7878]; port 0 picks a free one' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the gateway in the background (no-op if one already runs)'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop the running gateway (SIGTERM, then wait for it to exit)'
complete -c viber -n "__fish_viber_using_subcommand gateway; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand status" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand status" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand status" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand status" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand status" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand status" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand status" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand call" -s p -l params -d 'Params as a JSON object' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l scopes -d 'Ask for fewer scopes than this device holds (comma-separated)' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand call" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand call" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand call" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand call" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand call" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand watch" -l count -d 'Exit after printing this many events' -r
complete -c viber -n "__fish_viber_using_subcommand watch" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand watch" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand watch" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand watch" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand watch" -l terminal -d 'Stream the run\'s terminal output, byte for byte as in its pane logs'
complete -c viber -n "__fish_viber_using_subcommand watch" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand watch" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand watch" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l scopes -d 'Scopes to ask for when this device is not paired yet (comma-separated)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l role -d 'Role to pair as: operator (people, scripts) or node (a worker)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l timeout -d 'Stop waiting for an operator\'s decision after this many seconds (exit 7)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "list" -d 'List pending pairing requests'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "approve" -d 'Approve a pending request (scopes default to what it asked for, within yours)'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "reject" -d 'Reject a pending request'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "revoke" -d 'Unpair a device: its token stops working and its live connections close at once'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "rotate" -d 'Replace a device\'s token (the old one stops working), optionally changing its scopes'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "devices" -d 'List paired devices with their scopes and when they were last seen'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "trust" -d 'Pre-trust a public key: append it to this home\'s gateway/trusted_keys'
complete -c viber -n "__fish_viber_using_subcommand pair; and not __fish_seen_subcommand_from list approve reject revoke rotate devices trust help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from list" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from list" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from list" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from list" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from list" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -l scopes -d 'Scopes to grant (comma-separated); never more than this device holds' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -l idempotency-key -d 'Idempotency key for a retried call [default: a fresh one per invocation]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from approve" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -l idempotency-key -d 'Idempotency key for a retried call [default: a fresh one per invocation]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from reject" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -l idempotency-key -d 'Idempotency key for a retried call [default: a fresh one per invocation]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -l scopes -d 'New scopes for the device (comma-separated); never more than this device holds' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -l idempotency-key -d 'Idempotency key for a retried call [default: a fresh one per invocation]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from devices" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from devices" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from devices" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from devices" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from devices" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from devices" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from devices" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -l scopes -d 'Scopes the key gets (comma-separated, one role)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from trust" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "list" -d 'List pending pairing requests'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "approve" -d 'Approve a pending request (scopes default to what it asked for, within yours)'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "reject" -d 'Reject a pending request'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Unpair a device: its token stops working and its live connections close at once'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Replace a device\'s token (the old one stops working), optionally changing its scopes'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "devices" -d 'List paired devices with their scopes and when they were last seen'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "trust" -d 'Pre-trust a public key: append it to this home\'s gateway/trusted_keys'
complete -c viber -n "__fish_viber_using_subcommand pair; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand run" -l goal -d 'Start from a goal string instead of a task file' -r
complete -c viber -n "__fish_viber_using_subcommand run" -l idempotency-key -d 'A stable key so a retried invocation (cron, CI) starts the run only once' -r
complete -c viber -n "__fish_viber_using_subcommand run" -l mode -d 'always-ask, agent-decides or always-execute (overrides the task and config)' -r
complete -c viber -n "__fish_viber_using_subcommand run" -l approval-timeout -d 'Seconds an approval may wait before the run ends `blocked` (exit 4)' -r
complete -c viber -n "__fish_viber_using_subcommand run" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand run" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand run" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand run" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand run" -l detach -d 'Return once the run is started, printing its id'
complete -c viber -n "__fish_viber_using_subcommand run" -l no-autostart -d 'Do not start a gateway when none is running'
complete -c viber -n "__fish_viber_using_subcommand run" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand run" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand run" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand runs" -l status -d 'Only runs with this status (queued, running, succeeded, failed, ...)' -r
complete -c viber -n "__fish_viber_using_subcommand runs" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand runs" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand runs" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand runs" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand runs" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand runs" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand runs" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand verify" -l allowed-signers -d 'Trust the keys in this allowed_signers file (ssh-keygen format) [default: this home\'s gateway key, as `viber report --allowed-signers` prints it]' -r -F
complete -c viber -n "__fish_viber_using_subcommand verify" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand verify" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand verify" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand verify" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand verify" -l rerun -d 'Run the checks again on this machine and show, per claim, what changed'
complete -c viber -n "__fish_viber_using_subcommand verify" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand verify" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand verify" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand report" -s f -l format -d 'Output format [default: md; json with --json]' -r -f -a "md\t'Markdown for people'
json\t'The report itself (an in-toto Statement), for jq'
junit\t'JUnit XML, one testcase per claim, for CI systems'"
complete -c viber -n "__fish_viber_using_subcommand report" -s o -l output -d 'Write to FILE instead of stdout' -r -F
complete -c viber -n "__fish_viber_using_subcommand report" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand report" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand report" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand report" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand report" -l allowed-signers -d 'Print this home\'s gateway allowed_signers line (for `ssh-keygen -Y verify -f`)'
complete -c viber -n "__fish_viber_using_subcommand report" -l open -d 'Also write report.md and report.html into the run\'s workspace and print the HTML path'
complete -c viber -n "__fish_viber_using_subcommand report" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand report" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c viber -n "__fish_viber_using_subcommand node" -l run -d 'The run to execute' -r
complete -c viber -n "__fish_viber_using_subcommand node" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand node" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand node" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand node" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand node" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand node" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand node" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand chat" -l reprioritize -d 'Move a queued run to this place in the queue (1 = next)' -r
complete -c viber -n "__fish_viber_using_subcommand chat" -l rescope -d 'Replace the goal; the plan is redone from the current state' -r
complete -c viber -n "__fish_viber_using_subcommand chat" -l idempotency-key -d 'A stable key so a retried command is applied once' -r
complete -c viber -n "__fish_viber_using_subcommand chat" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand chat" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand chat" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand chat" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand chat" -l pause -d 'Finish the current action, then start no new one'
complete -c viber -n "__fish_viber_using_subcommand chat" -l resume -d 'Continue a paused run where it was'
complete -c viber -n "__fish_viber_using_subcommand chat" -l cancel -d 'Stop the run (its panes and what they started are killed)'
complete -c viber -n "__fish_viber_using_subcommand chat" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand chat" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand chat" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand approve" -l message -d 'A note recorded with the answer' -r
complete -c viber -n "__fish_viber_using_subcommand approve" -l run -d 'Only approvals of this run (when listing)' -r
complete -c viber -n "__fish_viber_using_subcommand approve" -l idempotency-key -d 'A stable key so a retried answer is applied once' -r
complete -c viber -n "__fish_viber_using_subcommand approve" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand approve" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand approve" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand approve" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand approve" -l allow -d 'Let the action run'
complete -c viber -n "__fish_viber_using_subcommand approve" -l deny -d 'Refuse it: the run ends `blocked`'
complete -c viber -n "__fish_viber_using_subcommand approve" -l remember -d 'With --allow: allow this command prefix for the rest of the run'
complete -c viber -n "__fish_viber_using_subcommand approve" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand approve" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand approve" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Decide one command: allow, ask or deny, and why'
complete -c viber -n "__fish_viber_using_subcommand policy; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -l mode -d 'always-ask, agent-decides or always-execute [default: config autonomy.default_mode]' -r
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -l task -d 'Also apply this task file\'s policy and mode' -r -F
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "check" -d 'Decide one command: allow, ask or deny, and why'
complete -c viber -n "__fish_viber_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand completions" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand completions" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand completions" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand completions" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand completions" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand completions" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand completions" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l out-dir -d 'Directory that receives man/ and completions/' -r -F
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l home -d 'Directory holding config, keys, sessions and workspace' -r -F
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l gateway -d 'Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]' -r
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l token -d 'Gateway token (prefer the env var: arguments are visible to other users)' -r
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l key -d 'Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519' -r -F
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -l json -d 'Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr'
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug); RUST_LOG overrides'
complete -c viber -n "__fish_viber_using_subcommand generate-docs" -s h -l help -d 'Print help'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "init" -d 'Create VIBER_HOME: config, device key, gateway token (never overwrites)'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "gateway" -d 'Run the gateway daemon (foreground), or start/stop it in the background'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "status" -d 'Show the gateway, this device and health'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "call" -d 'Call any protocol method by name'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "watch" -d 'Stream events as they happen'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "pair" -d 'Pair this device with a gateway, or approve, list, revoke and trust devices'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "run" -d 'Start a run from a task file (or --goal) and follow it to its outcome'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "runs" -d 'List runs, queued ones included'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "verify" -d 'Check a signed report offline: signature, evidence hashes, verdicts (--rerun repeats the checks)'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "report" -d 'Render a run\'s report as Markdown, JSON or JUnit XML; print the gateway\'s allowed_signers line'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "node" -d 'Execute one run as a worker (started by the gateway)'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "chat" -d 'Steer a live run: feedback, pause, resume, cancel, rescope, reprioritize'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "approve" -d 'List actions waiting for approval, or answer one'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "policy" -d 'Check what the autonomy policy does with a command'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "completions" -d 'Print a shell completion script'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "generate-docs" -d 'Regenerate man pages and completion scripts (for maintainers)'
complete -c viber -n "__fish_viber_using_subcommand help; and not __fish_seen_subcommand_from init gateway status call watch pair run runs verify report node chat approve policy completions generate-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from gateway" -f -a "start" -d 'Start the gateway in the background (no-op if one already runs)'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from gateway" -f -a "stop" -d 'Stop the running gateway (SIGTERM, then wait for it to exit)'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from pair" -f -a "list" -d 'List pending pairing requests'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from pair" -f -a "approve" -d 'Approve a pending request (scopes default to what it asked for, within yours)'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from pair" -f -a "reject" -d 'Reject a pending request'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from pair" -f -a "revoke" -d 'Unpair a device: its token stops working and its live connections close at once'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from pair" -f -a "rotate" -d 'Replace a device\'s token (the old one stops working), optionally changing its scopes'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from pair" -f -a "devices" -d 'List paired devices with their scopes and when they were last seen'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from pair" -f -a "trust" -d 'Pre-trust a public key: append it to this home\'s gateway/trusted_keys'
complete -c viber -n "__fish_viber_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "check" -d 'Decide one command: allow, ask or deny, and why'
