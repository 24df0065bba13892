# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_evercert_global_optspecs
    string join \n c/config= v/verbose h/help V/version
end

function __fish_evercert_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_evercert_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_evercert_using_subcommand
    set -l cmd (__fish_evercert_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c evercert -n "__fish_evercert_needs_command" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_needs_command" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_needs_command" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_needs_command" -s V -l version -d 'Print version'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "run" -d 'Run the agent in the foreground (systemd Type=notify)'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "renew" -d 'Renew what is due (or the named certificates), then exit'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "status" -d 'Every managed and monitored certificate and its state'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "check" -d 'Expiry check for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "config" -d 'Configuration commands'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "account" -d 'ACME account commands'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "revoke" -d 'Revoke a managed certificate at the CA'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "import" -d 'Build a configuration from another ACME client\'s (certbot)'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "discover" -d 'Every certificate nginx, Apache and HAProxy serve on this host, from their configuration'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "cluster" -d 'Fleet mode: hosts that share their certificates through etcd ([cluster])'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "generate" -d 'Print the man page or shell completions (for packaging; see scripts/contrib.sh)'
complete -c evercert -n "__fish_evercert_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand run" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand run" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand run" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand renew" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand renew" -l force -d 'Renew even if not due'
complete -c evercert -n "__fish_evercert_using_subcommand renew" -l dry-run -d 'Use the staging CA; write nothing live; run no reload hook'
complete -c evercert -n "__fish_evercert_using_subcommand renew" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand renew" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand status" -l html -d 'Write the status page (HTML, one timeline per certificate; what the agent serves at /status) to FILE' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand status" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand status" -l json -d 'Print one JSON array instead of a table'
complete -c evercert -n "__fish_evercert_using_subcommand status" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand status" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand check" -l warn -d 'Warn when a certificate expires within this duration [default: config or 30d]' -r
complete -c evercert -n "__fish_evercert_using_subcommand check" -l critical -d 'Critical when a certificate expires within this duration [default: config or 7d]' -r
complete -c evercert -n "__fish_evercert_using_subcommand check" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand check" -l json -d 'Print one JSON array instead of one line per target'
complete -c evercert -n "__fish_evercert_using_subcommand check" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand check" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand config; and not __fish_seen_subcommand_from check help" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand config; and not __fish_seen_subcommand_from check help" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Validate the configuration and print every error with file:line'
complete -c evercert -n "__fish_evercert_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand config; and __fish_seen_subcommand_from check" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand config; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate the configuration and print every error with file:line'
complete -c evercert -n "__fish_evercert_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and not __fish_seen_subcommand_from show rollover deactivate help" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand account; and not __fish_seen_subcommand_from show rollover deactivate help" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and not __fish_seen_subcommand_from show rollover deactivate help" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand account; and not __fish_seen_subcommand_from show rollover deactivate help" -f -a "show" -d 'Show the ACME account for the configured directory'
complete -c evercert -n "__fish_evercert_using_subcommand account; and not __fish_seen_subcommand_from show rollover deactivate help" -f -a "rollover" -d 'Replace the account key (new credentials are saved before anything else)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and not __fish_seen_subcommand_from show rollover deactivate help" -f -a "deactivate" -d 'Deactivate the account at the CA (cannot be undone)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and not __fish_seen_subcommand_from show rollover deactivate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from show" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from rollover" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from rollover" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from rollover" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from deactivate" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from deactivate" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from deactivate" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show the ACME account for the configured directory'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "rollover" -d 'Replace the account key (new credentials are saved before anything else)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "deactivate" -d 'Deactivate the account at the CA (cannot be undone)'
complete -c evercert -n "__fish_evercert_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand revoke" -l reason -d 'unspecified, keyCompromise, superseded, cessationOfOperation, affiliationChanged' -r
complete -c evercert -n "__fish_evercert_using_subcommand revoke" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand revoke" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand revoke" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand import; and not __fish_seen_subcommand_from certbot help" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand import; and not __fish_seen_subcommand_from certbot help" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand import; and not __fish_seen_subcommand_from certbot help" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand import; and not __fish_seen_subcommand_from certbot help" -f -a "certbot" -d 'Print (or write) an evercert configuration for certbot\'s certificates'
complete -c evercert -n "__fish_evercert_using_subcommand import; and not __fish_seen_subcommand_from certbot help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand import; and __fish_seen_subcommand_from certbot" -l from -d 'certbot\'s configuration directory (holding renewal/, live/ and archive/)' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand import; and __fish_seen_subcommand_from certbot" -l write -d 'Write the configuration to FILE (mode 0600) instead of printing it; never overwrites' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand import; and __fish_seen_subcommand_from certbot" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand import; and __fish_seen_subcommand_from certbot" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand import; and __fish_seen_subcommand_from certbot" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evercert -n "__fish_evercert_using_subcommand import; and __fish_seen_subcommand_from help" -f -a "certbot" -d 'Print (or write) an evercert configuration for certbot\'s certificates'
complete -c evercert -n "__fish_evercert_using_subcommand import; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand discover" -l write -d 'Write a configuration fragment ([[monitor]] entries, commented [[certificate]] proposals) to FILE (mode 0600); never overwrites' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand discover" -l nginx -d 'Read this nginx configuration (instead of [discover]\'s or the usual ones)' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand discover" -l apache -d 'Read this Apache configuration (instead of [discover]\'s or the usual ones)' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand discover" -l haproxy -d 'Read this HAProxy configuration (instead of [discover]\'s or the usual ones)' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand discover" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand discover" -l json -d 'Print one JSON array instead of a table'
complete -c evercert -n "__fish_evercert_using_subcommand discover" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand discover" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and not __fish_seen_subcommand_from keygen status help" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and not __fish_seen_subcommand_from keygen status help" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and not __fish_seen_subcommand_from keygen status help" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and not __fish_seen_subcommand_from keygen status help" -f -a "keygen" -d 'Print a new fleet key (32 random bytes, base64) for [cluster] secret_key_file'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and not __fish_seen_subcommand_from keygen status help" -f -a "status" -d 'Per certificate: the fleet\'s current version, what each host applied, lock holder, live hosts'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and not __fish_seen_subcommand_from keygen status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from keygen" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from keygen" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from keygen" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from status" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from status" -l json -d 'Print one JSON array instead of text'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "keygen" -d 'Print a new fleet key (32 random bytes, base64) for [cluster] secret_key_file'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "status" -d 'Per certificate: the fleet\'s current version, what each host applied, lock holder, live hosts'
complete -c evercert -n "__fish_evercert_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "man" -d 'The man page, evercert(1), in roff'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "completions" -d 'A shell completion script'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from man" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from man" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from man" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from completions" -s c -l config -d 'Configuration file [default: /etc/evercert/evercert.toml]' -r -F
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from completions" -s v -l verbose -d 'Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from completions" -s h -l help -d 'Print help'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "man" -d 'The man page, evercert(1), in roff'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "completions" -d 'A shell completion script'
complete -c evercert -n "__fish_evercert_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "run" -d 'Run the agent in the foreground (systemd Type=notify)'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "renew" -d 'Renew what is due (or the named certificates), then exit'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "status" -d 'Every managed and monitored certificate and its state'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "check" -d 'Expiry check for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "config" -d 'Configuration commands'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "account" -d 'ACME account commands'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "revoke" -d 'Revoke a managed certificate at the CA'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "import" -d 'Build a configuration from another ACME client\'s (certbot)'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "discover" -d 'Every certificate nginx, Apache and HAProxy serve on this host, from their configuration'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "cluster" -d 'Fleet mode: hosts that share their certificates through etcd ([cluster])'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "generate" -d 'Print the man page or shell completions (for packaging; see scripts/contrib.sh)'
complete -c evercert -n "__fish_evercert_using_subcommand help; and not __fish_seen_subcommand_from run renew status check config account revoke import discover cluster generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Validate the configuration and print every error with file:line'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "show" -d 'Show the ACME account for the configured directory'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "rollover" -d 'Replace the account key (new credentials are saved before anything else)'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "deactivate" -d 'Deactivate the account at the CA (cannot be undone)'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from import" -f -a "certbot" -d 'Print (or write) an evercert configuration for certbot\'s certificates'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "keygen" -d 'Print a new fleet key (32 random bytes, base64) for [cluster] secret_key_file'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "status" -d 'Per certificate: the fleet\'s current version, what each host applied, lock holder, live hosts'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "man" -d 'The man page, evercert(1), in roff'
complete -c evercert -n "__fish_evercert_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "completions" -d 'A shell completion script'
