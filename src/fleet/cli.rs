//! `evercert cluster …`.

use clap::Subcommand;

/// Fleet mode commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print a new fleet key (32 random bytes, base64) for [cluster] secret_key_file
    #[command(
        after_help = "Store it on every host of the fleet, readable only by evercert (mode 0600), the same file everywhere (docs/fleet.md).\n\nExample:\n  evercert cluster keygen > /etc/evercert/fleet.key"
    )]
    Keygen,
}

/// Runs a cluster command; the exit code.
pub fn run(command: &ClusterCommand) -> u8 {
    match command {
        ClusterCommand::Keygen => {
            println!("{}", super::crypto::generate());
            0
        }
    }
}
