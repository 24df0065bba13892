#!/usr/bin/env bash
# Regenerates the man page and the shell completions in contrib/ from the clap definitions
# (src/cli.rs). tests/it/docs.rs fails when the committed files differ from these.
set -euo pipefail
cd "$(dirname "$0")/.."
evercert() { cargo run --quiet --bin evercert -- "$@"; }
mkdir -p contrib/completions
evercert generate man > contrib/evercert.1
for shell in bash zsh fish; do
    evercert generate completions "$shell" > "contrib/completions/evercert.$shell"
done
echo "regenerated contrib/evercert.1 and contrib/completions/evercert.{bash,zsh,fish}"
