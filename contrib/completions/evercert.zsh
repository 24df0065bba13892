#compdef evercert

autoload -U is-at-least

_evercert() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_evercert_commands" \
"*::: :->evercert" \
&& ret=0
    case $state in
    (evercert)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(renew)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--force[Renew even if not due]' \
'--dry-run[Use the staging CA; write nothing live; run no reload hook]' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
'*::names -- Certificates to renew (default\: every certificate that is due):_default' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'--html=[Write the status page (HTML, one timeline per certificate; what the agent serves at /status) to FILE]:FILE:_files' \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'(--html)--json[Print one JSON array instead of a table]' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
'--warn=[Warn when a certificate expires within this duration \[default\: config or 30d\]]:DUR:_default' \
'--critical=[Critical when a certificate expires within this duration \[default\: config or 7d\]]:DUR:_default' \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--json[Print one JSON array instead of one line per target]' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
'*::targets -- Files or HOST\:PORT endpoints:_default' \
&& ret=0
;;
(config)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_evercert__subcmd__config_commands" \
"*::: :->config" \
&& ret=0

    case $state in
    (config)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-config-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__config__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-config-help-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(account)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_evercert__subcmd__account_commands" \
"*::: :->account" \
&& ret=0

    case $state in
    (account)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-account-command-$line[1]:"
        case $line[1] in
            (show)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(rollover)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(deactivate)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__account__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-account-help-command-$line[1]:"
        case $line[1] in
            (show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(rollover)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(deactivate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
'--reason=[unspecified, keyCompromise, superseded, cessationOfOperation, affiliationChanged]:REASON:_default' \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
':name:_default' \
&& ret=0
;;
(import)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_evercert__subcmd__import_commands" \
"*::: :->import" \
&& ret=0

    case $state in
    (import)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-import-command-$line[1]:"
        case $line[1] in
            (certbot)
_arguments "${_arguments_options[@]}" : \
'--from=[certbot'\''s configuration directory (holding renewal/, live/ and archive/)]:DIR:_files' \
'--write=[Write the configuration to FILE (mode 0600) instead of printing it; never overwrites]:FILE:_files' \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__import__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-import-help-command-$line[1]:"
        case $line[1] in
            (certbot)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(discover)
_arguments "${_arguments_options[@]}" : \
'--write=[Write a configuration fragment (\[\[monitor\]\] entries, commented \[\[certificate\]\] proposals) to FILE (mode 0600); never overwrites]:FILE:_files' \
'--nginx=[Read this nginx configuration (instead of \[discover\]'\''s or the usual ones)]:FILE:_files' \
'--apache=[Read this Apache configuration (instead of \[discover\]'\''s or the usual ones)]:FILE:_files' \
'--haproxy=[Read this HAProxy configuration (instead of \[discover\]'\''s or the usual ones)]:FILE:_files' \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--json[Print one JSON array instead of a table]' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(cluster)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_evercert__subcmd__cluster_commands" \
"*::: :->cluster" \
&& ret=0

    case $state in
    (cluster)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-cluster-command-$line[1]:"
        case $line[1] in
            (keygen)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--json[Print one JSON array instead of text]' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__cluster__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-cluster-help-command-$line[1]:"
        case $line[1] in
            (keygen)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(generate)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_evercert__subcmd__generate_commands" \
"*::: :->generate" \
&& ret=0

    case $state in
    (generate)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-generate-command-$line[1]:"
        case $line[1] in
            (man)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/evercert/evercert.toml\]]:FILE:_files' \
'-v[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'--verbose[Log every step with times and levels on standard error (one-shot commands print only their own progress lines and warnings otherwise)]' \
'-h[Print help]' \
'--help[Print help]' \
':shell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__generate__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-generate-help-command-$line[1]:"
        case $line[1] in
            (man)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-help-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(renew)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(config)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__help__subcmd__config_commands" \
"*::: :->config" \
&& ret=0

    case $state in
    (config)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-help-config-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(account)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__help__subcmd__account_commands" \
"*::: :->account" \
&& ret=0

    case $state in
    (account)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-help-account-command-$line[1]:"
        case $line[1] in
            (show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(rollover)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(deactivate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(import)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__help__subcmd__import_commands" \
"*::: :->import" \
&& ret=0

    case $state in
    (import)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-help-import-command-$line[1]:"
        case $line[1] in
            (certbot)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(discover)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(cluster)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__help__subcmd__cluster_commands" \
"*::: :->cluster" \
&& ret=0

    case $state in
    (cluster)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-help-cluster-command-$line[1]:"
        case $line[1] in
            (keygen)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(generate)
_arguments "${_arguments_options[@]}" : \
":: :_evercert__subcmd__help__subcmd__generate_commands" \
"*::: :->generate" \
&& ret=0

    case $state in
    (generate)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:evercert-help-generate-command-$line[1]:"
        case $line[1] in
            (man)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_evercert_commands] )) ||
_evercert_commands() {
    local commands; commands=(
'run:Run the agent in the foreground (systemd Type=notify)' \
'renew:Renew what is due (or the named certificates), then exit' \
'status:Every managed and monitored certificate and its state' \
'check:Expiry check for monitoring\: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN' \
'config:Configuration commands' \
'account:ACME account commands' \
'revoke:Revoke a managed certificate at the CA' \
'import:Build a configuration from another ACME client'\''s (certbot)' \
'discover:Every certificate nginx, Apache and HAProxy serve on this host, from their configuration' \
'cluster:Fleet mode\: hosts that share their certificates through etcd (\[cluster\])' \
'generate:Print the man page or shell completions (for packaging; see scripts/contrib.sh)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account_commands] )) ||
_evercert__subcmd__account_commands() {
    local commands; commands=(
'show:Show the ACME account for the configured directory' \
'rollover:Replace the account key (new credentials are saved before anything else)' \
'deactivate:Deactivate the account at the CA (cannot be undone)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert account commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__deactivate_commands] )) ||
_evercert__subcmd__account__subcmd__deactivate_commands() {
    local commands; commands=()
    _describe -t commands 'evercert account deactivate commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__help_commands] )) ||
_evercert__subcmd__account__subcmd__help_commands() {
    local commands; commands=(
'show:Show the ACME account for the configured directory' \
'rollover:Replace the account key (new credentials are saved before anything else)' \
'deactivate:Deactivate the account at the CA (cannot be undone)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert account help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__help__subcmd__deactivate_commands] )) ||
_evercert__subcmd__account__subcmd__help__subcmd__deactivate_commands() {
    local commands; commands=()
    _describe -t commands 'evercert account help deactivate commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__help__subcmd__help_commands] )) ||
_evercert__subcmd__account__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'evercert account help help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__help__subcmd__rollover_commands] )) ||
_evercert__subcmd__account__subcmd__help__subcmd__rollover_commands() {
    local commands; commands=()
    _describe -t commands 'evercert account help rollover commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__help__subcmd__show_commands] )) ||
_evercert__subcmd__account__subcmd__help__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'evercert account help show commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__rollover_commands] )) ||
_evercert__subcmd__account__subcmd__rollover_commands() {
    local commands; commands=()
    _describe -t commands 'evercert account rollover commands' commands "$@"
}
(( $+functions[_evercert__subcmd__account__subcmd__show_commands] )) ||
_evercert__subcmd__account__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'evercert account show commands' commands "$@"
}
(( $+functions[_evercert__subcmd__check_commands] )) ||
_evercert__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'evercert check commands' commands "$@"
}
(( $+functions[_evercert__subcmd__cluster_commands] )) ||
_evercert__subcmd__cluster_commands() {
    local commands; commands=(
'keygen:Print a new fleet key (32 random bytes, base64) for \[cluster\] secret_key_file' \
'status:Per certificate\: the fleet'\''s current version, what each host applied, lock holder, live hosts' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert cluster commands' commands "$@"
}
(( $+functions[_evercert__subcmd__cluster__subcmd__help_commands] )) ||
_evercert__subcmd__cluster__subcmd__help_commands() {
    local commands; commands=(
'keygen:Print a new fleet key (32 random bytes, base64) for \[cluster\] secret_key_file' \
'status:Per certificate\: the fleet'\''s current version, what each host applied, lock holder, live hosts' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert cluster help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__cluster__subcmd__help__subcmd__help_commands] )) ||
_evercert__subcmd__cluster__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'evercert cluster help help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__cluster__subcmd__help__subcmd__keygen_commands] )) ||
_evercert__subcmd__cluster__subcmd__help__subcmd__keygen_commands() {
    local commands; commands=()
    _describe -t commands 'evercert cluster help keygen commands' commands "$@"
}
(( $+functions[_evercert__subcmd__cluster__subcmd__help__subcmd__status_commands] )) ||
_evercert__subcmd__cluster__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'evercert cluster help status commands' commands "$@"
}
(( $+functions[_evercert__subcmd__cluster__subcmd__keygen_commands] )) ||
_evercert__subcmd__cluster__subcmd__keygen_commands() {
    local commands; commands=()
    _describe -t commands 'evercert cluster keygen commands' commands "$@"
}
(( $+functions[_evercert__subcmd__cluster__subcmd__status_commands] )) ||
_evercert__subcmd__cluster__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'evercert cluster status commands' commands "$@"
}
(( $+functions[_evercert__subcmd__config_commands] )) ||
_evercert__subcmd__config_commands() {
    local commands; commands=(
'check:Validate the configuration and print every error with file\:line' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert config commands' commands "$@"
}
(( $+functions[_evercert__subcmd__config__subcmd__check_commands] )) ||
_evercert__subcmd__config__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'evercert config check commands' commands "$@"
}
(( $+functions[_evercert__subcmd__config__subcmd__help_commands] )) ||
_evercert__subcmd__config__subcmd__help_commands() {
    local commands; commands=(
'check:Validate the configuration and print every error with file\:line' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert config help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__config__subcmd__help__subcmd__check_commands] )) ||
_evercert__subcmd__config__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'evercert config help check commands' commands "$@"
}
(( $+functions[_evercert__subcmd__config__subcmd__help__subcmd__help_commands] )) ||
_evercert__subcmd__config__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'evercert config help help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__discover_commands] )) ||
_evercert__subcmd__discover_commands() {
    local commands; commands=()
    _describe -t commands 'evercert discover commands' commands "$@"
}
(( $+functions[_evercert__subcmd__generate_commands] )) ||
_evercert__subcmd__generate_commands() {
    local commands; commands=(
'man:The man page, evercert(1), in roff' \
'completions:A shell completion script' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert generate commands' commands "$@"
}
(( $+functions[_evercert__subcmd__generate__subcmd__completions_commands] )) ||
_evercert__subcmd__generate__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'evercert generate completions commands' commands "$@"
}
(( $+functions[_evercert__subcmd__generate__subcmd__help_commands] )) ||
_evercert__subcmd__generate__subcmd__help_commands() {
    local commands; commands=(
'man:The man page, evercert(1), in roff' \
'completions:A shell completion script' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert generate help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__generate__subcmd__help__subcmd__completions_commands] )) ||
_evercert__subcmd__generate__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'evercert generate help completions commands' commands "$@"
}
(( $+functions[_evercert__subcmd__generate__subcmd__help__subcmd__help_commands] )) ||
_evercert__subcmd__generate__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'evercert generate help help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__generate__subcmd__help__subcmd__man_commands] )) ||
_evercert__subcmd__generate__subcmd__help__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'evercert generate help man commands' commands "$@"
}
(( $+functions[_evercert__subcmd__generate__subcmd__man_commands] )) ||
_evercert__subcmd__generate__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'evercert generate man commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help_commands] )) ||
_evercert__subcmd__help_commands() {
    local commands; commands=(
'run:Run the agent in the foreground (systemd Type=notify)' \
'renew:Renew what is due (or the named certificates), then exit' \
'status:Every managed and monitored certificate and its state' \
'check:Expiry check for monitoring\: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN' \
'config:Configuration commands' \
'account:ACME account commands' \
'revoke:Revoke a managed certificate at the CA' \
'import:Build a configuration from another ACME client'\''s (certbot)' \
'discover:Every certificate nginx, Apache and HAProxy serve on this host, from their configuration' \
'cluster:Fleet mode\: hosts that share their certificates through etcd (\[cluster\])' \
'generate:Print the man page or shell completions (for packaging; see scripts/contrib.sh)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__account_commands] )) ||
_evercert__subcmd__help__subcmd__account_commands() {
    local commands; commands=(
'show:Show the ACME account for the configured directory' \
'rollover:Replace the account key (new credentials are saved before anything else)' \
'deactivate:Deactivate the account at the CA (cannot be undone)' \
    )
    _describe -t commands 'evercert help account commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__account__subcmd__deactivate_commands] )) ||
_evercert__subcmd__help__subcmd__account__subcmd__deactivate_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help account deactivate commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__account__subcmd__rollover_commands] )) ||
_evercert__subcmd__help__subcmd__account__subcmd__rollover_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help account rollover commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__account__subcmd__show_commands] )) ||
_evercert__subcmd__help__subcmd__account__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help account show commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__check_commands] )) ||
_evercert__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help check commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__cluster_commands] )) ||
_evercert__subcmd__help__subcmd__cluster_commands() {
    local commands; commands=(
'keygen:Print a new fleet key (32 random bytes, base64) for \[cluster\] secret_key_file' \
'status:Per certificate\: the fleet'\''s current version, what each host applied, lock holder, live hosts' \
    )
    _describe -t commands 'evercert help cluster commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__cluster__subcmd__keygen_commands] )) ||
_evercert__subcmd__help__subcmd__cluster__subcmd__keygen_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help cluster keygen commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__cluster__subcmd__status_commands] )) ||
_evercert__subcmd__help__subcmd__cluster__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help cluster status commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__config_commands] )) ||
_evercert__subcmd__help__subcmd__config_commands() {
    local commands; commands=(
'check:Validate the configuration and print every error with file\:line' \
    )
    _describe -t commands 'evercert help config commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__config__subcmd__check_commands] )) ||
_evercert__subcmd__help__subcmd__config__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help config check commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__discover_commands] )) ||
_evercert__subcmd__help__subcmd__discover_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help discover commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__generate_commands] )) ||
_evercert__subcmd__help__subcmd__generate_commands() {
    local commands; commands=(
'man:The man page, evercert(1), in roff' \
'completions:A shell completion script' \
    )
    _describe -t commands 'evercert help generate commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__generate__subcmd__completions_commands] )) ||
_evercert__subcmd__help__subcmd__generate__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help generate completions commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__generate__subcmd__man_commands] )) ||
_evercert__subcmd__help__subcmd__generate__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help generate man commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__help_commands] )) ||
_evercert__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__import_commands] )) ||
_evercert__subcmd__help__subcmd__import_commands() {
    local commands; commands=(
'certbot:Print (or write) an evercert configuration for certbot'\''s certificates' \
    )
    _describe -t commands 'evercert help import commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__import__subcmd__certbot_commands] )) ||
_evercert__subcmd__help__subcmd__import__subcmd__certbot_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help import certbot commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__renew_commands] )) ||
_evercert__subcmd__help__subcmd__renew_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help renew commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__revoke_commands] )) ||
_evercert__subcmd__help__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help revoke commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__run_commands] )) ||
_evercert__subcmd__help__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help run commands' commands "$@"
}
(( $+functions[_evercert__subcmd__help__subcmd__status_commands] )) ||
_evercert__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'evercert help status commands' commands "$@"
}
(( $+functions[_evercert__subcmd__import_commands] )) ||
_evercert__subcmd__import_commands() {
    local commands; commands=(
'certbot:Print (or write) an evercert configuration for certbot'\''s certificates' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert import commands' commands "$@"
}
(( $+functions[_evercert__subcmd__import__subcmd__certbot_commands] )) ||
_evercert__subcmd__import__subcmd__certbot_commands() {
    local commands; commands=()
    _describe -t commands 'evercert import certbot commands' commands "$@"
}
(( $+functions[_evercert__subcmd__import__subcmd__help_commands] )) ||
_evercert__subcmd__import__subcmd__help_commands() {
    local commands; commands=(
'certbot:Print (or write) an evercert configuration for certbot'\''s certificates' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'evercert import help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__import__subcmd__help__subcmd__certbot_commands] )) ||
_evercert__subcmd__import__subcmd__help__subcmd__certbot_commands() {
    local commands; commands=()
    _describe -t commands 'evercert import help certbot commands' commands "$@"
}
(( $+functions[_evercert__subcmd__import__subcmd__help__subcmd__help_commands] )) ||
_evercert__subcmd__import__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'evercert import help help commands' commands "$@"
}
(( $+functions[_evercert__subcmd__renew_commands] )) ||
_evercert__subcmd__renew_commands() {
    local commands; commands=()
    _describe -t commands 'evercert renew commands' commands "$@"
}
(( $+functions[_evercert__subcmd__revoke_commands] )) ||
_evercert__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'evercert revoke commands' commands "$@"
}
(( $+functions[_evercert__subcmd__run_commands] )) ||
_evercert__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'evercert run commands' commands "$@"
}
(( $+functions[_evercert__subcmd__status_commands] )) ||
_evercert__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'evercert status commands' commands "$@"
}

if [ "$funcstack[1]" = "_evercert" ]; then
    _evercert "$@"
else
    compdef _evercert evercert
fi
