//! `evercert discover` on real configurations: each one is first accepted by the real server
//! (`nginx -t`, `apache2 -t`, `haproxy -c`, Debian's packages; scripts/ensure-deps.sh installs
//! them), then read by evercert, so that evercert's reading cannot drift from what the servers
//! accept. Certificates are minted by the test; the "unreadable path" is a certificate deleted
//! after the server validated the configuration (the servers refuse a missing file at start).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::certbot::Certbot;
use crate::support::certs::{KeyType, Leaf, TestCa, days_left, write};
use crate::support::setup::{Run, evercert_in as evercert, toml_string};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs a server's own configuration check; `env` is the environment it resolves variables
/// from (apache2ctl's envvars, HAProxy's environment).
fn server_check(program: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {program} ({err}): install it with scripts/ensure-deps.sh")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn accepted(program: &str, args: &[&str], env: &[(&str, &str)]) {
    let (ok, text) = server_check(program, args, env);
    assert!(
        ok,
        "{program} {args:?} rejects the test's configuration:\n{text}"
    );
}

/// A leaf for `domains` with `days` left (negative: expired), written as `DIR/STEM.pem` (full
/// chain) and `DIR/STEM.key`.
fn pair(
    ca: &TestCa,
    dir: &Path,
    stem: &str,
    domains: &[&str],
    days: i64,
) -> (PathBuf, PathBuf, Leaf) {
    let (not_before, not_after) = days_left(days);
    let leaf = ca.leaf(domains, not_before, not_after, KeyType::EcdsaP256);
    let cert = leaf.write_fullchain(&dir.join(format!("{stem}.pem")));
    let key = leaf.write_key(&dir.join(format!("{stem}.key")));
    (cert, key, leaf)
}

/// A private configuration file (evercert refuses group/world-readable ones for some commands).
fn config_file(path: &Path, text: &str) -> PathBuf {
    write(path, text);
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    path.to_owned()
}

fn discover_json(dir: &Path, args: &[&str]) -> (Run, Vec<Value>) {
    let mut all = vec!["discover", "--json"];
    all.extend_from_slice(args);
    let run = evercert(dir, &all);
    let findings: Vec<Value> = serde_json::from_str(&run.stdout).unwrap_or_else(|err| {
        panic!(
            "discover --json is not a JSON array ({err}):\n{}",
            run.all()
        )
    });
    (run, findings)
}

/// The finding for a path (a file, or the value as written when not resolvable).
fn by_path<'a>(findings: &'a [Value], path: &str) -> &'a Value {
    findings
        .iter()
        .find(|finding| finding["path"] == path)
        .unwrap_or_else(|| panic!("no finding for {path} in {findings:#?}"))
}

/// `FILE:LINE` of the first line of `file` containing `needle`.
fn line_of(file: &Path, needle: &str) -> String {
    let text = fs::read_to_string(file).unwrap();
    let index = text
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", file.display()));
    format!("{}:{}", file.display(), index + 1)
}

fn names(finding: &Value) -> Vec<&str> {
    finding["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect()
}

/// An nginx configuration over several include files and both `http` and `stream`, with a
/// certbot lineage, an expired certificate, a deleted one and a variable.
struct NginxSite {
    tmp: TempDir,
    certbot: Certbot,
    main: PathBuf,
    shop: PathBuf,
    old: PathBuf,
    gone: PathBuf,
    stream: PathBuf,
    blog: PathBuf,
}

impl NginxSite {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("nginx");
        let tls = root.join("tls");
        let ca = TestCa::new();
        let (shop, shop_key, _) = pair(
            &ca,
            &tls,
            "shop",
            &["shop.example.com", "www.shop.example.com"],
            60,
        );
        let (old, old_key, _) = pair(&ca, &tls, "old", &["old.example.com"], -3);
        let (gone, gone_key, _) = pair(&ca, &tls, "gone", &["gone.example.com"], 50);
        let (stream, _, _) = pair(&ca, &tls, "stream", &["mail.example.net"], 20);
        let certbot = Certbot::new();
        certbot.lineage(
            "blog.example.org",
            &["blog.example.org"],
            KeyType::EcdsaP256,
            "authenticator = webroot\nwebroot_path = /var/www/blog,\nserver = https://acme-v02.api.letsencrypt.org/directory\nkey_type = ecdsa\n",
        );
        let blog = certbot.live("blog.example.org", "fullchain.pem");
        let blog_key = certbot.live("blog.example.org", "privkey.pem");
        let main = write(
            &root.join("nginx.conf"),
            format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
                 pid {pid};\n\
                 error_log {log};\n\
                 events {{}}\n\
                 http {{\n\
                 \x20   access_log off;\n\
                 \x20   include sites-enabled/*.conf;\n\
                 }}\n\
                 stream {{\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:9443 ssl;\n\
                 \x20       ssl_certificate tls/stream.pem;   # relative to the prefix\n\
                 \x20       ssl_certificate_key tls/stream.key;\n\
                 \x20       proxy_pass 127.0.0.1:9;\n\
                 \x20   }}\n\
                 }}\n",
                pid = s(&tmp.path().join("nginx.pid")),
                log = s(&tmp.path().join("error.log")),
            ),
        );
        write(
            &root.join("sites-enabled/shop.conf"),
            format!(
                "server {{\n    listen 127.0.0.1:8443 ssl;\n    server_name shop.example.com www.shop.example.com;\n    ssl_certificate \"{}\";\n    ssl_certificate_key {};\n}}\n\n\
                 server {{\n    listen 127.0.0.1:8443 ssl;\n    server_name old.example.com;\n    ssl_certificate {};\n    ssl_certificate_key {};\n}}\n",
                s(&shop),
                s(&shop_key),
                s(&old),
                s(&old_key)
            ),
        );
        write(
            &root.join("sites-enabled/more.conf"),
            format!(
                "# by SNI: nginx picks the file per connection\n\
                 server {{\n    listen 127.0.0.1:8444 ssl;\n    server_name ~^(?<sub>.+)\\.example\\.com$;\n    ssl_certificate {tls}/$ssl_server_name.pem;\n    ssl_certificate_key {tls}/$ssl_server_name.key;\n}}\n\
                 server {{\n    listen 127.0.0.1:8445 ssl;\n    server_name gone.example.com;\n    ssl_certificate {gone};\n    ssl_certificate_key {gone_key};\n}}\n\
                 server {{\n    listen 127.0.0.1:8446 ssl;\n    server_name blog.example.org;\n    ssl_certificate {blog};\n    ssl_certificate_key {blog_key};\n}}\n",
                tls = s(&tls),
                gone = s(&gone),
                gone_key = s(&gone_key),
                blog = s(&blog),
                blog_key = s(&blog_key),
            ),
        );
        // Not matched by the glob: nginx does not read it, neither may evercert.
        write(
            &root.join("sites-enabled/disabled.conf.bak"),
            "server { ssl_certificate /nonexistent/never.pem; }\n",
        );
        Self {
            tmp,
            certbot,
            main,
            shop,
            old,
            gone,
            stream,
            blog,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// nginx's own verdict on the configuration.
    fn check(&self) -> (bool, String) {
        server_check(
            "nginx",
            &[
                "-t",
                "-p",
                s(&self.dir().join("nginx")),
                "-c",
                s(&self.main),
            ],
            &[],
        )
    }
}

#[test]
fn nginx_certificates_are_found_with_their_file_and_line() {
    let site = NginxSite::new();
    let (ok, text) = site.check();
    assert!(ok, "nginx -t rejects the test's configuration:\n{text}");
    fs::remove_file(&site.gone).unwrap();
    // evercert's own config: one certificate managed, one monitored, no [discover].
    let www = site.dir().join("www");
    let config = config_file(
        &site.dir().join("evercert.toml"),
        &format!(
            "state_dir = {}\n\n[[certificate]]\nname = \"shop\"\ndomains = [\"shop.example.com\", \"www.shop.example.com\"]\ncert_path = {}\nkey_path = {}\n[certificate.http01]\nwebroot = {}\n\n[[monitor]]\npath = {}\n",
            toml_string(s(&site.dir().join("state"))),
            toml_string(s(&site.shop)),
            toml_string(s(&site.shop.with_extension("key"))),
            toml_string(s(&www)),
            toml_string(s(&site.old)),
        ),
    );
    let (run, findings) = discover_json(site.dir(), &["-c", s(&config), "--nginx", s(&site.main)]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(findings.len(), 6, "{findings:#?}");
    let sites = site.dir().join("nginx/sites-enabled");

    let shop = by_path(&findings, s(&site.shop));
    assert_eq!(shop["server"], "nginx");
    assert_eq!(
        shop["config"],
        line_of(&sites.join("shop.conf"), "shop.pem")
    );
    assert_eq!(names(shop), ["shop.example.com", "www.shop.example.com"]);
    assert_eq!(shop["state"], "ok");
    assert_eq!(
        shop["issuer"],
        format!("CN={}", crate::support::certs::INTERMEDIATE_CN)
    );
    assert!(shop["days_left"].as_f64().unwrap() > 59.0);
    assert!(shop["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (shop["managed"].as_bool(), shop["monitored"].as_bool()),
        (Some(true), Some(false))
    );

    let old = by_path(&findings, s(&site.old));
    assert_eq!(old["state"], "expired");
    assert_eq!(old["config"], line_of(&sites.join("shop.conf"), "old.pem"));
    assert_eq!(
        (old["managed"].as_bool(), old["monitored"].as_bool()),
        (Some(false), Some(true))
    );

    let gone = by_path(&findings, s(&site.gone));
    assert_eq!(gone["state"], "error");
    assert!(
        gone["error"].as_str().unwrap().contains("not found"),
        "{gone}"
    );
    assert_eq!(names(gone), ["gone.example.com"]);

    let stream = by_path(&findings, s(&site.stream));
    assert_eq!(stream["config"], line_of(&site.main, "tls/stream.pem"));
    assert_eq!(
        names(stream),
        ["mail.example.net"],
        "the certificate's names when no server_name"
    );
    assert_eq!(stream["state"], "warning");

    let variable = format!("{}/$ssl_server_name.pem", s(&site.dir().join("nginx/tls")));
    let variable = by_path(&findings, &variable);
    assert_eq!(variable["state"], "unresolvable");
    assert_eq!(
        variable["config"],
        line_of(&sites.join("more.conf"), "$ssl_server_name.pem")
    );
    assert!(variable["error"].as_str().unwrap().contains("variable"));

    let blog = by_path(&findings, s(&site.blog));
    assert_eq!(blog["certbot"]["lineage"], "blog.example.org");
    assert_eq!(blog["certbot"]["dir"], s(&site.certbot.dir()));
    assert_eq!(
        (blog["managed"].as_bool(), blog["monitored"].as_bool()),
        (Some(false), Some(false))
    );

    // The table says the same, and names the certbot lineage.
    let table = evercert(
        site.dir(),
        &["-c", s(&config), "discover", "--nginx", s(&site.main)],
    );
    assert_eq!(table.code, 0, "{}", table.all());
    for needle in [
        "NOT WATCHED",
        "expired",
        "unresolvable",
        "managed",
        &format!("evercert import certbot --from {}", s(&site.certbot.dir())),
    ] {
        assert!(table.stdout.contains(needle), "{needle}: {}", table.all());
    }
}

#[test]
fn the_written_fragment_passes_config_check_and_proposes_what_acme_can_issue() {
    let site = NginxSite::new();
    let (ok, text) = site.check();
    assert!(ok, "nginx -t rejects the test's configuration:\n{text}");
    let fragment = site.dir().join("discovered.toml");
    let write_fragment = || {
        evercert(
            site.dir(),
            &[
                "discover",
                "--nginx",
                s(&site.main),
                "--write",
                s(&fragment),
            ],
        )
    };
    let run = write_fragment();
    assert_eq!(run.code, 0, "{}", run.all());
    let text = fs::read_to_string(&fragment).unwrap();
    assert_eq!(
        fs::metadata(&fragment).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let check = evercert(site.dir(), &["config", "check", "-c", s(&fragment)]);
    assert_eq!(check.code, 0, "{text}\n{}", check.all());
    // A monitor for each of the five files, none for the unresolvable one.
    assert!(
        check.stdout.contains("0 certificates, 5 monitors"),
        "{}",
        check.all()
    );
    let config = evercert::config::parse(&text, &fragment).unwrap();
    let watched: Vec<PathBuf> = config
        .monitors
        .iter()
        .map(|monitor| match &monitor.target {
            evercert::config::MonitorTarget::File(path) => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    for path in [&site.shop, &site.old, &site.gone, &site.stream, &site.blog] {
        assert!(
            watched.contains(path),
            "{} not monitored:\n{text}",
            path.display()
        );
    }
    // Proposals: shop with its key and reload, and the certbot lineage as `import certbot`
    // would write it (its webroot), not a guess.
    let uncommented: String = text
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "name = \"shop.example.com\"\ndomains = [\"shop.example.com\", \"www.shop.example.com\"]"
            .to_owned(),
        format!(
            "key_path = {}",
            toml_string(s(&site.shop.with_extension("key")))
        ),
        "reload = \"systemctl reload nginx\"".to_owned(),
        format!(
            "certbot lineage blog.example.org in {}",
            s(&site.certbot.dir())
        ),
        "webroot = \"/var/www/blog\"".to_owned(),
        "not resolvable".to_owned(),
    ] {
        assert!(uncommented.contains(&needle), "{needle}:\n{text}");
    }
    // Every proposal, uncommented, is a valid certificate (TODOs are placeholders, not syntax).
    let proposals = uncommented
        .split("\n\n")
        .filter_map(|block| {
            let at = block
                .lines()
                .position(|line| line.starts_with("[[certificate]]"))?;
            Some(block.lines().skip(at).collect::<Vec<_>>().join("\n"))
        })
        .collect::<Vec<_>>();
    assert!(proposals.len() >= 3, "{text}");
    let proposed = config_file(&site.dir().join("proposed.toml"), &proposals.join("\n\n"));
    let check = evercert(site.dir(), &["config", "check", "-c", s(&proposed)]);
    assert_eq!(check.code, 0, "{}\n{}", proposals.join("\n\n"), check.all());
    // Never overwrites.
    let again = write_fragment();
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(again.stderr.contains("already exists"), "{}", again.all());
}

#[test]
fn with_discover_in_the_config_status_and_check_watch_what_nginx_serves() {
    let site = NginxSite::new();
    let config = config_file(
        &site.dir().join("evercert.toml"),
        &format!(
            "state_dir = {}\n\n[discover]\nnginx = {}\n",
            toml_string(s(&site.dir().join("state"))),
            toml_string(s(&site.main)),
        ),
    );
    let (run, findings) = discover_json(site.dir(), &["-c", s(&config)]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        findings
            .iter()
            .filter(|finding| finding["state"] != "unresolvable")
            .all(|finding| finding["monitored"] == true),
        "{findings:#?}"
    );
    let status = evercert(site.dir(), &["-c", s(&config), "status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let entries: Vec<Value> = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(entries.len(), 5, "{entries:#?}");
    assert!(entries.iter().all(|entry| entry["kind"] == "monitored"));
    let old = entries
        .iter()
        .find(|entry| entry["path"] == s(&site.old))
        .unwrap();
    assert_eq!(old["state"], "expired");
    assert_eq!(old["name"], "nginx old.example.com");
    // check with no targets: the expired certificate makes it CRITICAL.
    let check = evercert(site.dir(), &["-c", s(&config), "check"]);
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(
        check
            .stdout
            .contains(&format!("CRITICAL {}: expired", s(&site.old))),
        "{}",
        check.all()
    );

    // A configuration nginx rejects is an error naming the same file and line as nginx.
    let broken = site.dir().join("nginx/sites-enabled/broken.conf");
    write(
        &broken,
        "server {\n    listen 127.0.0.1:8447 ssl;\n    server_name broken.example.com;\n",
    );
    let (ok, text) = site.check();
    assert!(!ok, "nginx accepted a server block that is not closed");
    let (run, _) = discover_json(site.dir(), &["-c", s(&config)]);
    assert_eq!(run.code, 2, "{}", run.all());
    let line = text
        .split(&format!("{}:", s(&broken)))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("nginx names no line:\n{text}"));
    assert!(
        run.stderr.contains(&format!("{}:{line}:", s(&broken))),
        "nginx says line {line}:\n{text}\nevercert:\n{}",
        run.all()
    );
    let status = evercert(site.dir(), &["-c", s(&config), "status"]);
    assert!(status.stdout.contains("discover nginx"), "{}", status.all());
}

#[test]
fn apache_virtual_hosts_through_includes() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("apache2");
    let tls = tmp.path().join("tls");
    let ca = TestCa::new();
    let (shop, shop_key, leaf) = pair(
        &ca,
        &tls,
        "shop",
        &["shop.example.com", "www.shop.example.com"],
        45,
    );
    let chain = write(&tls.join("chain.pem"), &leaf.chain_pem);
    let (old, old_key, _) = pair(&ca, &tls, "old", &["old.example.com"], -1);
    let (api, api_key, _) = pair(&ca, &tls, "api", &["api.example.com"], 80);
    let modules = "/usr/lib/apache2/modules";
    let main = write(
        &root.join("apache2.conf"),
        format!(
            "ServerRoot {root}\nPidFile {dir}/apache.pid\nMutex file:{dir} default\nErrorLog {dir}/apache-error.log\n\
             LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
             LoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so\n\
             LoadModule ssl_module {modules}/mod_ssl.so\n\
             Define TLS {tls}\n\
             Listen 127.0.0.1:8443\n\
             IncludeOptional conf-enabled/*.conf\n\
             IncludeOptional sites-enabled/*.conf\n",
            root = s(&root),
            dir = s(tmp.path()),
            tls = s(&tls),
        ),
    );
    write(
        &root.join("sites-enabled/010-shop.conf"),
        "<IfModule ssl_module>\n<VirtualHost 127.0.0.1:8443>\n    ServerName shop.example.com\n    ServerAlias www.shop.example.com\n    SSLEngine on\n    SSLCertificateFile ${TLS}/shop.pem\n    SSLCertificateKeyFile ${TLS}/shop.key\n    SSLCertificateChainFile ${TLS}/chain.pem\n</VirtualHost>\n</IfModule>\n",
    );
    write(
        &root.join("sites-enabled/020-old.conf"),
        format!(
            "<VirtualHost 127.0.0.1:8443>\n    ServerName old.example.com\n    SSLEngine on\n    SSLCertificateFile \"{}\"\n    SSLCertificateKeyFile \"{}\"\n</VirtualHost>\n\
             <VirtualHost 127.0.0.1:8443>\n    ServerName api.example.com\n    SSLEngine on\n    # set by apache2ctl's envvars, not in the configuration\n    SSLCertificateFile ${{APACHE_TLS_DIR}}/api.pem\n    SSLCertificateKeyFile {}\n</VirtualHost>\n",
            s(&old),
            s(&old_key),
            s(&api_key)
        ),
    );
    accepted(
        "apache2",
        &["-t", "-f", s(&main)],
        &[("APACHE_TLS_DIR", s(&tls))],
    );
    let (run, findings) = discover_json(tmp.path(), &["--apache", s(&main)]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(findings.len(), 4, "{findings:#?}");
    let sites = root.join("sites-enabled");
    let found = by_path(&findings, s(&shop));
    assert_eq!(found["server"], "apache");
    assert_eq!(
        found["config"],
        line_of(&sites.join("010-shop.conf"), "shop.pem")
    );
    assert_eq!(names(found), ["shop.example.com", "www.shop.example.com"]);
    assert_eq!(found["state"], "ok");
    let found = by_path(&findings, s(&chain));
    assert_eq!(found["chain_only"], true);
    assert_eq!(by_path(&findings, s(&old))["state"], "expired");
    let found = by_path(&findings, "${APACHE_TLS_DIR}/api.pem");
    assert_eq!(found["state"], "unresolvable");
    assert_eq!(
        found["config"],
        line_of(&sites.join("020-old.conf"), "api.pem")
    );
    assert_eq!(names(found), ["api.example.com"]);
    let _ = (api, shop_key);
}

#[test]
fn haproxy_crt_files_directories_and_lists() {
    let tmp = TempDir::new().unwrap();
    let certs = tmp.path().join("certs");
    let ca = TestCa::new();
    // A crt directory: one PEM with its key inside, one with the key beside it (`.key`).
    let (not_before, not_after) = days_left(70);
    let combined = ca.leaf(
        &["www.example.com"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    let dir = certs.join("dir");
    let www = write(
        &dir.join("www.pem"),
        format!("{}{}", combined.fullchain_pem(), combined.key_pem),
    );
    let (shop, _, _) = pair(&ca, &dir, "shop", &["shop.example.com"], 30);
    fs::rename(dir.join("shop.key"), dir.join("shop.pem.key")).unwrap();
    // A crt-list with an expired certificate and SNI filters, relative to crt-base.
    let (old, _, _) = pair(
        &ca,
        &certs,
        "old",
        &["old.example.com", "legacy.example.com"],
        -5,
    );
    fs::rename(certs.join("old.key"), certs.join("old.pem.key")).unwrap();
    let list = write(
        &tmp.path().join("crt-list.txt"),
        "# certificate [settings] filters\nold.pem [alpn h2,http/1.1] legacy.example.com !old.example.com\n",
    );
    let (env_cert, _, _) = pair(&ca, &certs, "env", &["env.example.com"], 60);
    fs::rename(certs.join("env.key"), certs.join("env.pem.key")).unwrap();
    let main = write(
        &tmp.path().join("haproxy.cfg"),
        format!(
            "global\n    crt-base {certs}\n\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\n\
             frontend https\n    bind 127.0.0.1:8443 ssl crt {dir} crt-list {list}\n    bind 127.0.0.1:8444 ssl crt \"${{CERTS}}/env.pem\"\n    default_backend app\n\n\
             backend app\n    server app 127.0.0.1:8080\n",
            certs = s(&certs),
            dir = s(&dir),
            list = s(&list),
        ),
    );
    accepted("haproxy", &["-c", "-f", s(&main)], &[("CERTS", s(&certs))]);
    let (run, findings) = discover_json(tmp.path(), &["--haproxy", s(&main)]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(findings.len(), 4, "{findings:#?}");
    for (path, wanted) in [
        (&shop, vec!["shop.example.com"]),
        (&www, vec!["www.example.com"]),
    ] {
        let found = by_path(&findings, s(path));
        assert_eq!(found["server"], "haproxy");
        assert_eq!(found["config"], line_of(&main, "crt-list"));
        assert_eq!(
            names(found),
            wanted,
            "the certificate's names (SNI from the certificate)"
        );
    }
    let found = by_path(&findings, s(&old));
    assert_eq!(found["config"], line_of(&list, "old.pem"));
    assert_eq!(found["state"], "expired");
    assert_eq!(names(found), ["legacy.example.com"]);
    let found = by_path(&findings, "${CERTS}/env.pem");
    assert_eq!(found["state"], "unresolvable");
    assert_eq!(found["config"], line_of(&main, "env.pem"));
    let _ = env_cert;
}
