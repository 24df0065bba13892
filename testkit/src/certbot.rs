//! A certbot configuration directory (what `/etc/letsencrypt` holds) built by the test:
//! `renewal/NAME.conf` in certbot's configobj format, certificates minted with rcgen in
//! `archive/NAME/`, and the relative symlinks certbot makes from `live/NAME/`. Used by the
//! import tests and by discover (which recognises lineages a web server serves).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::certs::{self, KeyType, Leaf, TestCa, days_left};

/// A certbot configuration directory (what `/etc/letsencrypt` holds) in a temp dir.
pub struct Certbot {
    tmp: TempDir,
}

impl Certbot {
    pub fn new() -> Self {
        Self {
            tmp: TempDir::new().unwrap(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("letsencrypt")
    }

    pub fn work(&self) -> &Path {
        self.tmp.path()
    }

    /// A lineage with two issued versions (certbot keeps them all) of certificates for
    /// `domains`; `live/NAME/` points at the second. `params` is the `[renewalparams]` body
    /// after `authenticator`-independent keys, verbatim.
    pub fn lineage(&self, name: &str, domains: &[&str], key_type: KeyType, params: &str) -> Leaf {
        let ca = TestCa::new();
        let archive = self.dir().join("archive").join(name);
        let live = self.dir().join("live").join(name);
        fs::create_dir_all(&live).unwrap();
        let mut current = None;
        for (version, left) in [(1, -20), (2, 40)] {
            let (not_before, not_after) = days_left(left);
            let leaf = ca.leaf(domains, not_before, not_after, key_type);
            certs::write(&archive.join(format!("cert{version}.pem")), &leaf.cert_pem);
            certs::write(
                &archive.join(format!("chain{version}.pem")),
                &leaf.chain_pem,
            );
            certs::write(
                &archive.join(format!("fullchain{version}.pem")),
                leaf.fullchain_pem(),
            );
            let key = certs::write(
                &archive.join(format!("privkey{version}.pem")),
                &leaf.key_pem,
            );
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
            current = Some(leaf);
        }
        for file in ["cert", "chain", "fullchain", "privkey"] {
            std::os::unix::fs::symlink(
                format!("../../archive/{name}/{file}2.pem"),
                live.join(format!("{file}.pem")),
            )
            .unwrap();
        }
        self.conf(name, params);
        current.unwrap()
    }

    /// Writes `renewal/NAME.conf` the way certbot 2.x does.
    pub fn conf(&self, name: &str, params: &str) {
        let dir = self.dir();
        let live = dir.join("live").join(name);
        let text = format!(
            "# renew_before_expiry = 30 days\n\
             version = 2.11.0\n\
             archive_dir = {archive}\n\
             cert = {live}/cert.pem\n\
             privkey = {live}/privkey.pem\n\
             chain = {live}/chain.pem\n\
             fullchain = {live}/fullchain.pem\n\
             \n\
             # Options used in the renewal process\n\
             [renewalparams]\n\
             account = 0123456789abcdef0123456789abcdef\n\
             {params}",
            archive = dir.join("archive").join(name).display(),
            live = live.display(),
        );
        certs::write(&dir.join("renewal").join(format!("{name}.conf")), text);
    }

    pub fn live(&self, name: &str, file: &str) -> PathBuf {
        self.dir().join("live").join(name).join(file)
    }
}
