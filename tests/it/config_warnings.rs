//! `evercert config check` warns (without refusing to run) about hook scripts and
//! certificate directories that other users can change: whoever can write a reload script
//! runs commands as root, whoever can write a certificate directory swaps what the web
//! server loads. Exit code 0 either way; the warnings name the path and the fix.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn config_check(dir: &Path, config: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_evercert"))
        .current_dir(dir)
        .env_remove("EVERCERT_CONFIG")
        .env("EVERCERT_LOG", "warn")
        .args(["config", "check", "-c"])
        .arg(config)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A configuration with one certificate in `tls/shop/`, reloaded by `reload.sh` in
/// `hooks/`, and an alert command in `alerts/`.
fn write_config(dir: &Path) -> std::path::PathBuf {
    for sub in ["tls/shop", "hooks", "alerts", "state"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for script in ["hooks/reload.sh", "alerts/page.sh"] {
        fs::write(dir.join(script), "#!/bin/sh\nexit 0\n").unwrap();
        chmod(&dir.join(script), 0o755);
    }
    let config = dir.join("evercert.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{d}/state\"\n\n\
             [acme]\ndirectory = \"https://127.0.0.1:14000/dir\"\ncontact = [\"mailto:ops@example.test\"]\n\n\
             [alerts]\ncommand = \"{d}/alerts/page.sh --quiet\"\n\n\
             [[certificate]]\nname = \"shop\"\ndomains = [\"shop.example.test\"]\n\
             cert_path = \"{d}/tls/shop/fullchain.pem\"\nkey_path = \"{d}/tls/shop/privkey.pem\"\n\
             reload = \"{d}/hooks/reload.sh && echo done\"\n\
             [certificate.http01]\nwebroot = \"{d}/www\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    chmod(&config, 0o600);
    config
}

#[test]
fn config_check_warns_about_writable_hook_scripts_and_certificate_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = write_config(dir);

    // As set up: nothing to say.
    let (code, stderr) = config_check(dir, &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    chmod(&dir.join("hooks/reload.sh"), 0o775);
    chmod(&dir.join("alerts"), 0o777);
    chmod(&dir.join("tls/shop"), 0o757);
    let (code, stderr) = config_check(dir, &config);
    assert_eq!(code, 0, "warnings do not fail the check: {stderr}");
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        format!(
            "warning: {} (the script of a reload, dns-01 or alert hook) is writable by its group (mode 0775)",
            dir.join("hooks/reload.sh").display()
        ),
        format!(
            "warning: {} (a directory holding a hook's script) is writable by its group and all other users (mode 0777)",
            dir.join("alerts").display()
        ),
        format!(
            "warning: {} (the directory of a cert_path, key_path or bundle_path) is writable by all other users (mode 0757)",
            dir.join("tls/shop").display()
        ),
        format!("Fix: chmod go-w {}", dir.join("hooks/reload.sh").display()),
        "can make evercert run any command as".to_owned(),
        "can swap the certificate or key your server loads".to_owned(),
    ] {
        assert!(
            flat.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.matches("warning:").count(),
        3,
        "one warning per path:\n{stderr}"
    );
}
