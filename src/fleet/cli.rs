//! `evercert cluster …`.

use std::path::Path;

use clap::Subcommand;

/// Fleet mode commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print a new fleet key (32 random bytes, base64) for [cluster] secret_key_file
    #[command(
        after_help = "Store it on every host of the fleet, readable only by evercert (mode 0600), the same file everywhere (docs/fleet.md).\n\nExample:\n  evercert cluster keygen > /etc/evercert/fleet.key"
    )]
    Keygen,
    /// Per certificate: the fleet's current version, what each host applied, lock holder, live hosts
    #[command(
        after_help = "Reads etcd only (it does not join the fleet). Exit status: 0, 1 when a live host lags or failed to apply the current version, 2 without [cluster], 3 when etcd cannot be reached.\n\nExamples:\n  evercert cluster status\n  evercert cluster status --json | jq '.[].hosts[] | select(.ok != true)'"
    )]
    Status {
        /// Print one JSON array instead of text
        #[arg(long)]
        json: bool,
    },
}

/// Runs a cluster command; the exit code.
pub fn run(config_path: &Path, command: &ClusterCommand) -> u8 {
    match command {
        ClusterCommand::Keygen => {
            println!("{}", super::crypto::generate());
            0
        }
        ClusterCommand::Status { json } => status(config_path, *json),
    }
}

fn status(config_path: &Path, json: bool) -> u8 {
    let config = match crate::config::load(config_path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return 2;
        }
    };
    let Some(settings) = &config.cluster else {
        eprintln!(
            "error: {} has no [cluster] section: this host is not in a fleet (docs/fleet.md)",
            config.source.display()
        );
        return 2;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return 3;
        }
    };
    let names: Vec<String> = config.certificates.iter().map(|c| c.name.clone()).collect();
    let gathered = runtime.block_on(async {
        let etcd = super::etcd::Etcd::new(settings)?;
        super::status::gather(&etcd, settings, &names, time::OffsetDateTime::now_utc()).await
    });
    let certs = match gathered {
        Ok(certs) => certs,
        Err(err) => {
            eprintln!("error: {err}");
            return 3;
        }
    };
    if json {
        match serde_json::to_string_pretty(&certs) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("error: {err}");
                return 3;
            }
        }
    } else {
        print!("{}", super::status::render(&certs));
    }
    let troubled = certs.iter().any(|cert| {
        cert.hosts.iter().any(|host| {
            host.lagging
                || (host.alive && host.generation == cert.generation && host.ok == Some(false))
        })
    });
    u8::from(troubled)
}
