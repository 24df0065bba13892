//! `evercert import certbot` on certbot layouts built by the test: `renewal/NAME.conf` in
//! certbot's configobj format, certificates minted with rcgen in `archive/NAME/`, and the
//! relative symlinks certbot makes from `live/NAME/` to the newest version.
//!
//! Every produced configuration must pass `evercert config check`; the structured checks
//! read it with evercert's own parser. The last test takes an imported lineage through a
//! real renewal against Pebble: the migration works, not just the translation.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::certbot::Certbot;
use crate::support::certs::{self, KeyType};
use crate::support::pebble::Pebble;
use crate::support::setup::{Run, evercert_in as evercert};
use evercert::config::{self, ChallengeSettings, Config, KeyType as ConfigKeyType};
use tempfile::TempDir;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// evercert's side of a certbot layout (a trait: `Certbot` lives in the support crate).
trait Import {
    fn import(&self) -> (Run, Config);
    fn checked(&self, text: &str) -> Config;
}

impl Import for Certbot {
    /// `evercert import certbot --from DIR`, plus the output checked by `config check`.
    fn import(&self) -> (Run, Config) {
        let run = evercert(
            self.work(),
            &["import", "certbot", "--from", s(&self.dir())],
        );
        assert!(run.code == 0 || run.code == 1, "{run}");
        let config = self.checked(&run.stdout);
        (run, config)
    }

    /// Writes `text` as a configuration, asserts `evercert config check` accepts it and
    /// parses it with evercert's parser.
    fn checked(&self, text: &str) -> Config {
        let path = self.work().join(format!("imported-{}.toml", rand_suffix()));
        certs::write(&path, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let check = evercert(self.work(), &["config", "check", "-c", s(&path)]);
        assert_eq!(
            check.code, 0,
            "the imported configuration is invalid:\n{text}\n{check}"
        );
        config::parse(text, &path).unwrap_or_else(|errors| panic!("{errors}\n{text}"))
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The comments (`# TODO: …`) just above the certificate named `name`.
fn todos_of(text: &str, name: &str) -> String {
    let mut pending = String::new();
    let mut above = String::new();
    for line in text.lines() {
        let bare = line.strip_prefix("# ").unwrap_or(line);
        if bare.starts_with("[[certificate]]") {
            above = std::mem::take(&mut pending);
            continue;
        }
        if bare == format!("name = {name:?}") {
            return flat(&above);
        }
        match line.strip_prefix("# ") {
            Some(comment) => {
                pending.push_str(comment);
                pending.push('\n');
            }
            None => pending.clear(),
        }
    }
    String::new()
}

/// Comment text as one line: `#` markers and the wrapping removed.
fn flat(text: &str) -> String {
    text.lines()
        .map(|line| line.trim_start_matches('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

fn certificate<'a>(config: &'a Config, name: &str) -> &'a config::CertificateSettings {
    config
        .certificate(name)
        .unwrap_or_else(|| panic!("no certificate {name} in {config:#?}"))
}

#[test]
fn a_webroot_lineage_becomes_a_certificate_with_its_paths_names_and_hook() {
    let certbot = Certbot::new();
    certbot.lineage(
        "shop.example.com",
        &["shop.example.com", "www.shop.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\n\
         webroot_path = /var/www/shop,\n\
         server = https://acme-v02.api.letsencrypt.org/directory\n\
         key_type = ecdsa\n\
         deploy_hook = systemctl reload nginx\n\
         [[webroot_map]]\n\
         shop.example.com = /var/www/shop\n\
         www.shop.example.com = /var/www/shop\n",
    );
    let (run, config) = certbot.import();
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(config.acme.directory, config::LETSENCRYPT);
    assert_eq!(config.certificates.len(), 1);
    let shop = certificate(&config, "shop.example.com");
    assert_eq!(shop.domains, ["shop.example.com", "www.shop.example.com"]);
    assert_eq!(
        shop.cert_path,
        certbot.live("shop.example.com", "fullchain.pem")
    );
    assert_eq!(
        shop.key_path,
        certbot.live("shop.example.com", "privkey.pem")
    );
    assert_eq!(shop.key_type, ConfigKeyType::EcdsaP256);
    assert_eq!(shop.reload.as_deref(), Some("systemctl reload nginx"));
    assert_eq!(
        shop.challenge,
        ChallengeSettings::Http01Webroot(PathBuf::from("/var/www/shop"))
    );
    assert!(!flat(&run.stdout).contains("TODO"), "{run}");
    assert!(
        run.stdout
            .contains("replaces the fullchain.pem and privkey.pem symlinks with its own"),
        "the configuration explains the takeover of certbot's symlinks:\n{run}"
    );

    // What the operator must do, on stderr.
    assert!(
        run.stderr.contains("systemctl disable --now certbot.timer"),
        "{run}"
    );
    assert!(run.stderr.contains("new ACME account"), "{run}");
    assert!(run.stderr.contains("`replaces`"), "{run}");
    assert!(
        run.stderr.contains(&format!(
            "ReadWritePaths={} /var/www/shop/.well-known/acme-challenge",
            certbot.dir().join("live").display()
        )),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("shop.example.com: shop.example.com, www.shop.example.com (webroot, ecdsa-p256): imported"),
        "{run}"
    );
}

#[test]
fn a_webroot_per_name_keeps_the_first_and_says_what_to_do() {
    let certbot = Certbot::new();
    certbot.lineage(
        "example.org",
        &["example.org", "blog.example.org"],
        KeyType::EcdsaP256,
        "authenticator = webroot\n\
         key_type = ecdsa\n\
         [[webroot_map]]\n\
         example.org = /srv/www\n\
         blog.example.org = /srv/blog\n",
    );
    let (run, config) = certbot.import();
    let cert = certificate(&config, "example.org");
    assert_eq!(
        cert.challenge,
        ChallengeSettings::Http01Webroot(PathBuf::from("/srv/www"))
    );
    let todos = todos_of(&run.stdout, "example.org");
    assert!(
        todos.contains("TODO: certbot used a webroot per name"),
        "{todos}\n{run}"
    );
    assert!(todos.contains("blog.example.org → /srv/blog"), "{todos}");
    assert!(
        todos.contains("evercert renew --dry-run --force example.org"),
        "{todos}"
    );
    // No deploy hook: nothing reloaded the server under certbot either; say so.
    assert_eq!(cert.reload, None);
    assert!(todos.contains("set reload to"), "{todos}");
    assert!(run.stderr.contains("imported with 2 TODOs"), "{run}");
}

#[test]
fn standalone_rsa_with_renew_hook_and_a_port() {
    let certbot = Certbot::new();
    certbot.lineage(
        "api",
        &["api.example.com"],
        KeyType::Rsa2048,
        "authenticator = standalone\n\
         http01_port = 8402\n\
         key_type = rsa\n\
         rsa_key_size = 4096\n\
         renew_hook = \"systemctl reload haproxy, or else\"\n",
    );
    let (run, config) = certbot.import();
    assert_eq!(run.code, 0, "{run}");
    let api = certificate(&config, "api");
    assert_eq!(api.key_type, ConfigKeyType::Rsa4096);
    assert_eq!(
        api.challenge,
        ChallengeSettings::Http01Listen("[::]:8402".parse().unwrap())
    );
    assert_eq!(
        api.reload.as_deref(),
        Some("systemctl reload haproxy, or else")
    );
    assert!(!flat(&run.stdout).contains("TODO"), "{run}");
}

#[test]
fn standalone_with_pre_and_post_hooks_needs_a_person() {
    let certbot = Certbot::new();
    certbot.lineage(
        "mail",
        &["mail.example.com"],
        KeyType::EcdsaP256,
        "authenticator = standalone\n\
         key_type = ecdsa\n\
         pre_hook = systemctl stop nginx\n\
         post_hook = systemctl start nginx\n",
    );
    let (run, config) = certbot.import();
    let mail = certificate(&config, "mail");
    assert_eq!(
        mail.challenge,
        ChallengeSettings::Http01Listen("[::]:80".parse().unwrap())
    );
    // `systemctl start nginx` is no reload: it is not taken as one.
    assert_eq!(mail.reload, None);
    let todos = todos_of(&run.stdout, "mail");
    assert!(todos.contains("pre_hook `systemctl stop nginx`"), "{todos}");
}

#[test]
fn the_nginx_authenticator_is_imported_with_a_todo_and_the_installer_reload() {
    let certbot = Certbot::new();
    certbot.lineage(
        "legacy.example.net",
        &["legacy.example.net"],
        KeyType::EcdsaP256,
        "authenticator = nginx\n\
         installer = nginx\n\
         key_type = ecdsa\n\
         elliptic_curve = secp384r1\n",
    );
    let (run, config) = certbot.import();
    assert_eq!(run.code, 0, "{run}");
    let legacy = certificate(&config, "legacy.example.net");
    assert_eq!(legacy.key_type, ConfigKeyType::EcdsaP384);
    assert_eq!(
        legacy.challenge,
        ChallengeSettings::Http01Webroot(PathBuf::from("/var/www/html"))
    );
    assert_eq!(legacy.reload.as_deref(), Some("systemctl reload nginx"));
    let todos = todos_of(&run.stdout, "legacy.example.net");
    assert!(
        todos.contains("TODO: certbot's nginx authenticator edited nginx's configuration"),
        "{todos}\n{run}"
    );
    assert!(
        todos.contains("location ^~ /.well-known/acme-challenge/"),
        "{todos}"
    );
    assert!(
        run.stdout
            .contains("1 lineage; 1 needs attention: search for TODO"),
        "{run}"
    );
    assert!(
        run.stderr.contains("imported with 1 TODO to fill in"),
        "{run}"
    );
    assert!(
        run.stderr.contains("search the configuration for TODO"),
        "{run}"
    );
}

#[test]
fn dns_plugins_and_manual_hooks_get_a_placeholder_hook() {
    let certbot = Certbot::new();
    certbot.lineage(
        "wild",
        &["example.com", "*.example.com"],
        KeyType::EcdsaP256,
        "authenticator = dns-cloudflare\n\
         dns_cloudflare_credentials = /root/.secrets/cloudflare.ini\n\
         dns_cloudflare_propagation_seconds = 30\n\
         key_type = ecdsa\n",
    );
    certbot.lineage(
        "manual",
        &["manual.example.com"],
        KeyType::EcdsaP256,
        "authenticator = manual\n\
         manual_auth_hook = /usr/local/bin/dns-auth.sh\n\
         manual_cleanup_hook = /usr/local/bin/dns-cleanup.sh\n\
         pref_challs = dns-01,\n\
         key_type = ecdsa\n",
    );
    let (run, config) = certbot.import();
    assert_eq!(run.code, 0, "{run}");
    let wild = certificate(&config, "wild");
    assert_eq!(wild.domains, ["example.com", "*.example.com"]);
    match &wild.challenge {
        ChallengeSettings::Dns01 { hook, wait, .. } => {
            assert_eq!(hook, evercert::import::PLACEHOLDER_DNS_HOOK);
            assert_eq!(*wait, time::Duration::seconds(30));
        }
        other => panic!("wild: {other:?}"),
    }
    let todos = todos_of(&run.stdout, "wild");
    assert!(
        todos.contains("dns-cloudflare plugin (credentials: /root/.secrets/cloudflare.ini)"),
        "{todos}"
    );
    assert!(
        todos.contains("present|cleanup DOMAIN RECORD_NAME VALUE"),
        "{todos}"
    );

    let manual = certificate(&config, "manual");
    assert!(
        matches!(&manual.challenge, ChallengeSettings::Dns01 { hook, .. } if hook == evercert::import::PLACEHOLDER_DNS_HOOK)
    );
    let todos = todos_of(&run.stdout, "manual");
    assert!(
        todos.contains("present) exec /usr/local/bin/dns-auth.sh ;;"),
        "{todos}"
    );
    assert!(
        todos.contains("cleanup) exec /usr/local/bin/dns-cleanup.sh ;;"),
        "{todos}"
    );
    assert!(
        flat(&run.stdout).contains("2 lineages; 2 need attention"),
        "{run}"
    );
}

#[test]
fn the_staging_server_and_key_types_from_the_certificate() {
    let certbot = Certbot::new();
    // certbot before 2.0 wrote no key_type: the current key says what it is.
    certbot.lineage(
        "old",
        &["old.example.com"],
        KeyType::Rsa2048,
        "authenticator = webroot\n\
         webroot_path = /var/www/html,\n\
         server = https://acme-staging-v02.api.letsencrypt.org/directory\n",
    );
    certbot.lineage(
        "p384",
        &["p384.example.com"],
        KeyType::EcdsaP384,
        "authenticator = webroot\n\
         webroot_path = /var/www/html,\n\
         server = https://acme-staging-v02.api.letsencrypt.org/directory\n",
    );
    let (run, config) = certbot.import();
    assert_eq!(config.acme.directory, config::LETSENCRYPT_STAGING);
    assert!(
        flat(&run.stdout).contains("directory = \"letsencrypt-staging\""),
        "{run}"
    );
    assert!(flat(&run.stdout).contains("staging CA"), "{run}");
    assert_eq!(certificate(&config, "old").key_type, ConfigKeyType::Rsa2048);
    assert_eq!(
        certificate(&config, "p384").key_type,
        ConfigKeyType::EcdsaP384
    );
}

#[test]
fn lineages_of_another_ca_are_flagged_and_renew_before_is_kept() {
    let certbot = Certbot::new();
    for name in ["a", "b"] {
        certbot.lineage(
            name,
            &[&format!("{name}.example.com")],
            KeyType::EcdsaP256,
            "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n\
             deploy_hook = systemctl reload nginx\n",
        );
    }
    certbot.lineage(
        "zerossl",
        &["z.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n\
         server = https://acme.zerossl.com/v2/DV90\nreuse_key = True\n",
    );
    // A renew_before_expiry that is set (not commented out) is taken over.
    let conf = certbot.dir().join("renewal/a.conf");
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, format!("renew_before_expiry = 2 weeks\n{text}")).unwrap();

    let (run, config) = certbot.import();
    assert_eq!(
        config.acme.directory,
        config::LETSENCRYPT,
        "the majority's CA"
    );
    let todos = todos_of(&run.stdout, "zerossl");
    assert!(
        todos.contains("https://acme.zerossl.com/v2/DV90"),
        "{todos}\n{run}"
    );
    assert!(certificate(&config, "zerossl").reuse_key);
    assert!(
        flat(&run.stdout).contains("renew_before = \"14d\""),
        "{run}"
    );
    assert!(todos_of(&run.stdout, "a").is_empty(), "{run}");
}

#[test]
fn deploy_hook_scripts_get_certbots_environment_and_pre_post_scripts_a_todo() {
    let certbot = Certbot::new();
    certbot.lineage(
        "shop",
        &["shop.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n",
    );
    let deploy = certs::write(
        &certbot.dir().join("renewal-hooks/deploy/10-copy"),
        "#!/bin/sh\ncp \"$RENEWED_LINEAGE/fullchain.pem\" /srv/app/tls.pem\n",
    );
    fs::set_permissions(&deploy, fs::Permissions::from_mode(0o755)).unwrap();
    let post = certs::write(
        &certbot.dir().join("renewal-hooks/post/restart"),
        "#!/bin/sh\nsystemctl restart app\n",
    );
    fs::set_permissions(&post, fs::Permissions::from_mode(0o755)).unwrap();

    let (run, config) = certbot.import();
    let reload = certificate(&config, "shop").reload.clone().unwrap();
    assert_eq!(
        reload,
        format!(
            "RENEWED_LINEAGE='{}' RENEWED_DOMAINS='shop.example.com'; export RENEWED_LINEAGE RENEWED_DOMAINS; {}",
            certbot.dir().join("live/shop").display(),
            deploy.display()
        )
    );
    assert!(
        flat(&run.stdout).contains(&format!(
            "TODO: certbot ran these scripts before or after every renewal: {}",
            post.display()
        )),
        "{run}"
    );
}

#[test]
fn an_unreadable_lineage_is_commented_out_and_the_exit_code_says_so() {
    let certbot = Certbot::new();
    certbot.lineage(
        "good",
        &["good.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n",
    );
    // A lineage whose archive was deleted: its live/ symlinks dangle.
    certbot.lineage(
        "broken",
        &["broken.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n",
    );
    fs::remove_dir_all(certbot.dir().join("archive/broken")).unwrap();

    let (run, config) = certbot.import();
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(config.certificates.len(), 1, "{run}");
    assert!(config.certificate("good").is_some());
    assert!(run.stdout.contains("\n# name = \"broken\"\n"), "{run}");
    assert!(
        run.stdout
            .contains("TODO: commented out: the certificate could not be read"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("broken: broken (webroot, ecdsa-p256): NOT imported"),
        "{run}"
    );
}

#[test]
fn a_copy_of_certbots_directory_is_read_but_the_real_paths_are_kept() {
    let certbot = Certbot::new();
    certbot.lineage(
        "shop",
        &["shop.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n\
         deploy_hook = systemctl reload nginx\n",
    );
    // As in a copy taken from another host: the configuration names /etc/letsencrypt.
    let conf = certbot.dir().join("renewal/shop.conf");
    let text = fs::read_to_string(&conf).unwrap();
    let real = "/nonexistent-evercert-test/letsencrypt";
    fs::write(&conf, text.replace(s(&certbot.dir()), real)).unwrap();

    let (run, config) = certbot.import();
    assert_eq!(run.code, 0, "{run}");
    let shop = certificate(&config, "shop");
    assert_eq!(shop.domains, ["shop.example.com"]);
    assert_eq!(
        shop.cert_path,
        PathBuf::from(format!("{real}/live/shop/fullchain.pem"))
    );
    assert!(todos_of(&run.stdout, "shop").is_empty(), "{run}");
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_flagged() {
    let certbot = Certbot::new();
    certbot.lineage(
        "shop",
        &["shop.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n\
         deploy_hook = systemctl reload nginx\n",
    );
    // live/shop/privkey.pem points at an older key than the certificate's.
    let link = certbot.live("shop", "privkey.pem");
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("../../archive/shop/privkey1.pem", &link).unwrap();

    let (run, config) = certbot.import();
    assert!(config.certificate("shop").is_some());
    let todos = todos_of(&run.stdout, "shop");
    assert!(
        todos.contains("does not match the certificate"),
        "{todos}\n{run}"
    );
}

#[test]
fn write_creates_the_file_0600_and_never_overwrites() {
    let certbot = Certbot::new();
    certbot.lineage(
        "shop",
        &["shop.example.com"],
        KeyType::EcdsaP256,
        "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n",
    );
    let printed = evercert(
        certbot.work(),
        &["import", "certbot", "--from", s(&certbot.dir())],
    );
    assert_eq!(printed.code, 0, "{printed}");

    let target = certbot.work().join("evercert.toml");
    let from = certbot.dir();
    let args = [
        "import",
        "certbot",
        "--from",
        s(&from),
        "--write",
        s(&target),
    ];
    let written = evercert(certbot.work(), &args);
    assert_eq!(written.code, 0, "{written}");
    assert!(written.stdout.is_empty(), "{written}");
    assert!(
        written
            .stderr
            .contains(&format!("wrote {}", target.display())),
        "{written}"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), printed.stdout);
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let check = evercert(certbot.work(), &["config", "check", "-c", s(&target)]);
    assert_eq!(check.code, 0, "{check}");

    fs::write(&target, "# the operator's own\n").unwrap();
    let again = evercert(certbot.work(), &args);
    assert_eq!(again.code, 2, "{again}");
    assert!(again.stderr.contains("already exists"), "{again}");
    assert!(again.stderr.contains("never overwrites"), "{again}");
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "# the operator's own\n"
    );
    let leftovers: Vec<_> = fs::read_dir(certbot.work())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_directory_without_certbot_is_a_usage_error() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("nothing");
    let run = evercert(tmp.path(), &["import", "certbot", "--from", s(&missing)]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains(&format!("{}: not found", missing.join("renewal").display())),
        "{run}"
    );
    assert!(run.stderr.contains("--from DIR"), "{run}");
    assert!(run.stdout.is_empty(), "{run}");

    fs::create_dir_all(tmp.path().join("empty/renewal")).unwrap();
    let run = evercert(
        tmp.path(),
        &["import", "certbot", "--from", s(&tmp.path().join("empty"))],
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("no certbot lineages"), "{run}");
}

/// The migration itself: an imported standalone lineage renews against Pebble; evercert
/// archives certbot's pair and turns certbot's live symlinks into its own.
#[test]
fn an_imported_lineage_renews_and_takes_over_certbots_live_symlinks() {
    crate::support::pebble::require_pebble();
    let pebble = Pebble::start();
    let certbot = Certbot::new();
    let old = certbot.lineage(
        "shop",
        &["shop.example.test"],
        KeyType::EcdsaP256,
        &format!(
            "authenticator = standalone\n\
             http01_address = 127.0.0.1\n\
             http01_port = {port}\n\
             server = {server}\n\
             key_type = ecdsa\n",
            port = pebble.http_port(),
            server = pebble.directory_url(),
        ),
    );
    let (run, _) = certbot.import();
    assert_eq!(run.code, 0, "{run}");
    // What a test adds: where evercert keeps its state, and trust in Pebble's HTTPS.
    let state = certbot.work().join("state");
    let text = run.stdout.replacen(
        "[acme]\n",
        &format!(
            "state_dir = \"{}\"\n\n[acme]\nca_bundle = \"{}\"\n",
            state.display(),
            pebble.ca_bundle_path().display()
        ),
        1,
    );
    let config_path = certbot.work().join("evercert.toml");
    certs::write(&config_path, &text);
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o600)).unwrap();

    let renew = evercert(certbot.work(), &["-c", s(&config_path), "renew", "--force"]);
    assert_eq!(renew.code, 0, "{renew}\n{text}");

    let fullchain = certbot.live("shop", "fullchain.pem");
    let target = fs::read_link(&fullchain).unwrap();
    assert_eq!(
        target,
        state.join("live/shop/fullchain.pem"),
        "certbot's symlink is evercert's now"
    );
    let served = fs::read_to_string(&fullchain).unwrap();
    assert_ne!(served, old.fullchain_pem(), "a new certificate is live");
    // certbot's pair is archived by evercert, and certbot's own archive is untouched.
    let imported: Vec<PathBuf> = fs::read_dir(state.join("archive/shop"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with("-imported"))
        .collect();
    assert_eq!(imported.len(), 1, "{imported:?}");
    assert_eq!(
        fs::read_to_string(imported[0].join("fullchain.pem")).unwrap(),
        old.fullchain_pem()
    );
    assert_eq!(
        fs::read_to_string(certbot.dir().join("archive/shop/fullchain2.pem")).unwrap(),
        old.fullchain_pem()
    );
    let status = evercert(certbot.work(), &["-c", s(&config_path), "check"]);
    assert_eq!(status.code, 0, "{status}");
}

#[test]
fn hooks_running_nginx_test_get_a_todo_with_the_form_that_works_in_the_sandbox() {
    let certbot = Certbot::new();
    let params = "authenticator = webroot\nwebroot_path = /var/www/html,\nkey_type = ecdsa\n";
    certbot.lineage(
        "shop",
        &["shop.example.com"],
        KeyType::EcdsaP256,
        &format!("{params}deploy_hook = nginx -t && systemctl reload nginx\n"),
    );
    certbot.lineage(
        "blog",
        &["blog.example.com"],
        KeyType::EcdsaP256,
        &format!("{params}deploy_hook = systemctl reload nginx\n"),
    );
    let (run, _) = certbot.import();
    let shop = todos_of(&run.stdout, "shop");
    assert!(
        shop.contains("certbot's deploy_hook runs nginx -t"),
        "{run}"
    );
    assert!(
        shop.contains("ReadWritePaths=-/run/nginx.pid /var/lib/nginx /var/log/nginx"),
        "{run}"
    );
    assert!(!todos_of(&run.stdout, "blog").contains("nginx -t"), "{run}");

    // `config check` on the imported file says the same.
    let path = certbot.work().join("imported.toml");
    certs::write(&path, &run.stdout);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let check = evercert(certbot.work(), &["config", "check", "-c", s(&path)]);
    assert_eq!(check.code, 0, "{check}");
    assert!(
        flat(&check.stderr).contains(
            "warning: the reload command of certificate shop (`nginx -t && systemctl reload nginx`) runs nginx -t"
        ),
        "{check}"
    );
    assert!(!check.stderr.contains("certificate blog"), "{check}");

    // A script in renewal-hooks/deploy/ (run for every lineage) is read too.
    let script = certs::write(
        &certbot.dir().join("renewal-hooks/deploy/50-nginx"),
        "#!/bin/sh\nset -e\n/usr/sbin/nginx -q -t\nsystemctl reload nginx\n",
    );
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let (run, _) = certbot.import();
    for name in ["shop", "blog"] {
        assert!(
            todos_of(&run.stdout, name).contains(&format!("{} runs nginx -t", script.display())),
            "{run}"
        );
    }
}
