//! A real nginx (Debian `nginx-light`, installed by `scripts/ensure-deps.sh`) on loopback,
//! with its own prefix, pid file and error log, serving TLS from the paths a test gives.
//! `reload_command` is what an operator's reload hook runs: `nginx -s reload`, a graceful
//! reload that returns as soon as the signal is sent while old workers finish.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running nginx; stopped (with its workers) when dropped.
pub struct Nginx {
    dir: PathBuf,
    port: u16,
    master: Child,
}

impl Nginx {
    /// Starts nginx in `dir` on a free loopback port with `workers` worker processes, each
    /// with its own listening socket (`reuseport`), serving `cert_path` and `key_path`.
    pub fn start(dir: &Path, cert_path: &Path, key_path: &Path, workers: u32) -> Self {
        let binary = nginx_binary();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = super::pebble::unused_loopback_port();
        let config = format!(
            "daemon off;\nuser root;\nworker_processes {workers};\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/tmp/body;\n  proxy_temp_path {dir}/tmp/proxy;\n  fastcgi_temp_path {dir}/tmp/fastcgi;\n  uwsgi_temp_path {dir}/tmp/uwsgi;\n  scgi_temp_path {dir}/tmp/scgi;\n\
             \x20 server {{\n    listen 127.0.0.1:{port} ssl reuseport;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    return 200 \"ok\\n\";\n  }}\n}}\n",
            dir = dir.display(),
            cert = cert_path.display(),
            key = key_path.display(),
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let master = Command::new(&binary)
            .args(Self::args(dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let nginx = Self {
            dir: dir.to_owned(),
            port,
            master,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nginx did not listen on {port}; error log:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn args(dir: &Path) -> Vec<String> {
        vec![
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            dir.join("nginx.conf").display().to_string(),
            "-e".into(),
            dir.join("error.log").display().to_string(),
        ]
    }

    /// The shell command of a reload hook: a graceful reload of this nginx.
    pub fn reload_command(&self) -> String {
        format!(
            "{} {} -s reload",
            nginx_binary().display(),
            Self::args(&self.dir).join(" ")
        )
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits.
        if let Some(pid) = rustix::process::Pid::from_raw(self.master.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.master.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// nginx from Debian's `nginx-light`; the tests need it (no silent skip).
fn nginx_binary() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/nginx");
    assert!(
        path.exists(),
        "nginx is not installed: run scripts/ensure-deps.sh (Debian package nginx-light)"
    );
    path
}
