//! The ACME account: where its credentials live, registering it, and checking with the CA —
//! not assuming — what became of it (lookup, key rollover, deactivation).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, Key, NewAccount};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use super::error::{AcmeError, Operation, ProblemType, classify};
use super::http::build_http;
use super::{AcmeClient, BAD_NONCE_ATTEMPTS, SaveSecret};
use crate::acme::FailureKind;

/// How long a connection waits for another one in this state_dir to finish registering an
/// account (each of its requests has its own deadline; this bounds a stopped or hung one).
const REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(120);
use crate::config::AcmeSettings;

/// Where an account's credentials for one directory live: `STATE_DIR/accounts/HOST-HASH/`.
pub fn account_dir(state_dir: &Path, directory_url: &str) -> PathBuf {
    let host: String = directory_url
        .trim_start_matches("https://")
        .split(['/', '?'])
        .next()
        .unwrap_or("ca")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Two directories on one host (production and staging of a private CA) get separate
    // accounts: the hash tells them apart.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory_url.as_bytes());
    let short = crate::inventory::hex(&digest.as_ref()[..4]);
    state_dir.join("accounts").join(format!("{host}-{short}"))
}

/// Moves the stored account for `directory` aside (`DIR.gone-TIMESTAMP`), so that the next
/// connection registers a new one. Returns where it went.
pub fn forget_account(state_dir: &Path, directory: &str) -> std::io::Result<PathBuf> {
    let dir = account_dir(state_dir, directory);
    // Appended, not `with_extension`: the directory's name has dots of its own (a host, an
    // IP address), and replacing its last part would lose the port and hash that tell CAs
    // apart.
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".gone-{}", now_compact()));
    let aside = dir.with_file_name(name);
    std::fs::rename(&dir, &aside)?;
    Ok(aside)
}

/// What is stored about an account besides instant-acme's credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountInfo {
    pub directory: String,
    pub id: String,
    pub contact: Vec<String>,
    pub created_at: String,
}

/// What the CA says about the account, asked with the account's own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    Valid,
    /// Deactivated by its owner (RFC 8555 §7.3.6).
    Deactivated,
    /// Revoked by the CA.
    Revoked,
    /// The CA does not know the account (`accountDoesNotExist`: a reset or another CA).
    Unknown,
    /// The CA refuses requests signed by it (`unauthorized`), with its words: what a CA
    /// answers for a deactivated account.
    Refused(String),
}

impl AccountStatus {
    /// The account cannot be used any more: a new registration is what helps.
    pub fn is_gone(&self) -> bool {
        !matches!(self, Self::Valid)
    }

    fn from_body(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Object {
            status: String,
        }
        let object: Object = serde_json::from_slice(body).ok()?;
        Some(match object.status.as_str() {
            "valid" => Self::Valid,
            "deactivated" => Self::Deactivated,
            "revoked" => Self::Revoked,
            other => Self::Refused(format!("status {other}")),
        })
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Valid => f.write_str("valid"),
            Self::Deactivated => f.write_str("deactivated"),
            Self::Revoked => f.write_str("revoked by the CA"),
            Self::Unknown => f.write_str("unknown to the CA"),
            Self::Refused(why) => write!(f, "refused by the CA ({why})"),
        }
    }
}

/// The account key (PKCS#8 DER) from stored credentials; a secret, kept only to ask the CA
/// with `onlyReturnExisting` whether it still knows the key.
fn key_of(credentials: &AccountCredentials) -> Option<Vec<u8>> {
    let value = serde_json::to_value(credentials).ok()?;
    let encoded = value.get("key_pkcs8")?.as_str()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()
}

impl AcmeClient {
    /// Loads the account for `directory` from `state_dir`, or creates one (agreeing to the
    /// CA's terms) and saves its credentials before using them.
    pub async fn connect(
        settings: &AcmeSettings,
        directory: &str,
        state_dir: &Path,
        save: SaveSecret<'_>,
    ) -> Result<Self, AcmeError> {
        let mut attempt = 1;
        loop {
            let result = match Self::load(settings, directory, state_dir).await {
                Ok(Some(client)) => Ok(client),
                Ok(None) => Self::register_once(settings, directory, state_dir, save).await,
                Err(err) => Err(err),
            };
            match result {
                Err(err) if err.bad_nonce && attempt < BAD_NONCE_ATTEMPTS => attempt += 1,
                result => return result,
            }
        }
    }

    /// Registers an account unless another connection in this state_dir did while we
    /// waited for the registration lock (then that account is loaded): one account per CA.
    async fn register_once(
        settings: &AcmeSettings,
        directory: &str,
        state_dir: &Path,
        save: SaveSecret<'_>,
    ) -> Result<Self, AcmeError> {
        let name = account_dir(state_dir, directory)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock_dir = state_dir.to_owned();
        // The lock is polled with sleeps: wait for it off the runtime's workers. A holder
        // that does not finish in time is reported as transient: the next attempt tries again.
        let _held = tokio::task::spawn_blocking(move || {
            crate::lock::hold_registration(&lock_dir, &name, REGISTRATION_WAIT)
        })
        .await
        .map_err(|err| AcmeError::permanent(err.to_string()))?
        .map_err(|message| AcmeError::local(FailureKind::Transient, message))?;
        match Self::load(settings, directory, state_dir).await? {
            Some(client) => Ok(client),
            None => Self::register(settings, directory, state_dir, save).await,
        }
    }

    /// The stored account for `directory`, or `None` when there is none; registers nothing.
    pub async fn load(
        settings: &AcmeSettings,
        directory: &str,
        state_dir: &Path,
    ) -> Result<Option<Self>, AcmeError> {
        let dir = account_dir(state_dir, directory);
        let credentials_path = dir.join("credentials.json");
        let bytes = match crate::fsread::read(&credentials_path, crate::fsread::SMALL_FILE_MAX) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(AcmeError::permanent(format!(
                    "cannot read account credentials {}: {}; evercert must run as the owner of state_dir",
                    credentials_path.display(),
                    err.problem
                )));
            }
        };
        let credentials: AccountCredentials = serde_json::from_slice(&bytes).map_err(|err| {
            AcmeError::permanent(format!(
                "account credentials {} are damaged ({err}); move the directory {} aside to create a new account",
                credentials_path.display(),
                dir.display()
            ))
        })?;
        let http = build_http(settings, directory)?;
        let key_pkcs8 = key_of(&credentials);
        let account = Account::builder_with_http(Box::new(http.clone()))
            .from_credentials(credentials)
            .await
            .map_err(|err| {
                classify(
                    err,
                    Operation::Directory,
                    directory,
                    settings.ca_bundle.is_some(),
                )
            })?;
        let info = crate::fsread::read(&dir.join("account.json"), crate::fsread::SMALL_FILE_MAX)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| AccountInfo {
                directory: directory.to_owned(),
                id: account.id().to_owned(),
                contact: settings.contact.clone(),
                created_at: String::new(),
            });
        Ok(Some(Self::new(
            account,
            directory,
            info,
            http,
            key_pkcs8,
            settings.ca_bundle.is_some(),
        )))
    }

    async fn register(
        settings: &AcmeSettings,
        directory: &str,
        state_dir: &Path,
        save: SaveSecret<'_>,
    ) -> Result<Self, AcmeError> {
        let dir = account_dir(state_dir, directory);
        let credentials_path = dir.join("credentials.json");
        let http = build_http(settings, directory)?;
        let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
        let eab = settings
            .eab
            .as_ref()
            .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac_key));
        let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.to_owned(),
                eab.as_ref(),
            )
            .await
            .map_err(|err| {
                classify(
                    err,
                    Operation::NewAccount,
                    directory,
                    settings.ca_bundle.is_some(),
                )
            })?;
        let info = AccountInfo {
            directory: directory.to_owned(),
            id: account.id().to_owned(),
            contact: settings.contact.clone(),
            created_at: crate::units::rfc3339(time::OffsetDateTime::now_utc()),
        };
        let credentials_json = serde_json::to_vec_pretty(&credentials)
            .map_err(|err| AcmeError::permanent(err.to_string()))?;
        save(&credentials_path, &credentials_json).map_err(|err| {
            AcmeError::permanent(format!(
                "cannot save the new account's credentials to {}: {err}",
                credentials_path.display()
            ))
        })?;
        if let Ok(json) = serde_json::to_vec_pretty(&info) {
            let _ = save(&dir.join("account.json"), &json);
        }
        tracing::info!("created ACME account {} at {directory}", info.id);
        Ok(Self::new(
            account,
            directory,
            info,
            http,
            key_of(&credentials),
            settings.ca_bundle.is_some(),
        ))
    }

    /// Asks the CA about the account (POST-as-GET of its URL, signed with its key).
    pub async fn account_status(&self) -> Result<AccountStatus, AcmeError> {
        self.status_of(&self.account).await
    }

    async fn status_of(&self, account: &Account) -> Result<AccountStatus, AcmeError> {
        let _one_lookup = self.lookup.lock().await;
        self.http.shared.watch_account(account.id());
        // instant-acme 0.8.5 has no POST-as-GET of the account; fetching it "as an order"
        // sends exactly that, and the HTTP layer keeps the account's body for us. The
        // order parse of an account object fails, as expected.
        let result = account.order(account.id().to_owned()).await;
        let body = self.http.shared.take_account_answer();
        if let Some(status) = body.as_deref().and_then(AccountStatus::from_body) {
            return Ok(status);
        }
        let err = match result {
            Ok(_) => {
                return Err(AcmeError::permanent(format!(
                    "the CA at {} answered the lookup of account {} without an account status",
                    self.directory,
                    account.id()
                )));
            }
            Err(err) => self.classify(err, Operation::AccountLookup),
        };
        match &err.problem {
            Some(ProblemType::AccountDoesNotExist) => return Ok(AccountStatus::Unknown),
            Some(ProblemType::Unauthorized) if err.status.is_none_or(|s| s < 500) => {
                return Ok(AccountStatus::Refused(err.message));
            }
            _ => {}
        }
        // No answer that says anything (step-ca answers 500 `{}` for an account it lost):
        // ask whether the CA knows the key at all (`onlyReturnExisting`).
        if err.status.is_some_and(|status| status >= 500)
            && err.problem.is_none()
            && self.exists(account).await == Some(false)
        {
            return Ok(AccountStatus::Unknown);
        }
        Err(err)
    }

    /// Whether the CA knows the account's key, by `newAccount` with `onlyReturnExisting`;
    /// `None` when it did not say.
    async fn exists(&self, account: &Account) -> Option<bool> {
        if account.id() != self.account.id() {
            return None;
        }
        let pkcs8 = self.key_pkcs8.as_ref()?;
        let key = Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(pkcs8.as_slice())).ok()?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.clone()));
        match Account::builder_with_http(Box::new(self.http.clone()))
            .from_key((key, der), self.directory.clone())
            .await
        {
            Ok(_) => Some(true),
            Err(err) => {
                let err = self.classify(err, Operation::AccountLookup);
                (err.problem == Some(ProblemType::AccountDoesNotExist)).then_some(false)
            }
        }
    }

    /// Replaces the account key, and checks with the CA that the new key is the one it takes
    /// before saving it; the new credentials are saved before the old key is forgotten, so a
    /// crash cannot leave us with a key the CA no longer knows.
    pub async fn rollover(
        &mut self,
        state_dir: &Path,
        save: SaveSecret<'_>,
    ) -> Result<(), AcmeError> {
        let old = self.account.clone();
        let credentials = self
            .account
            .update_key()
            .await
            .map_err(|err| self.classify(err, Operation::KeyChange))?;
        let dir = account_dir(state_dir, &self.directory);
        let json = serde_json::to_vec_pretty(&credentials)
            .map_err(|err| AcmeError::permanent(err.to_string()))?;
        let verified = self.status_of(&self.account).await;
        if matches!(verified, Ok(AccountStatus::Valid)) {
            let path = dir.join("credentials.json");
            save(&path, &json).map_err(|err| {
                AcmeError::permanent(format!(
                    "the CA now knows the new account key but it could not be saved to {}: {err}; the account is lost, create a new one",
                    path.display()
                ))
            })?;
            self.key_pkcs8 = key_of(&credentials);
            return Ok(());
        }
        let new_key = match verified {
            Ok(status) => format!("the account is {status} with the new key"),
            Err(err) => format!("the new key could not be checked: {err}"),
        };
        if matches!(self.status_of(&old).await, Ok(AccountStatus::Valid)) {
            self.account = old;
            return Err(AcmeError::permanent(format!(
                "the CA at {} answered the key rollover of account {} with success, but {new_key}, and the old key still works: nothing was changed, the old key stays in use",
                self.directory, self.info.id
            )));
        }
        // Neither key checks out: keep the new one beside the old, never lose either.
        let aside = dir.join(format!("credentials.rollover-{}.json", now_compact()));
        let kept = match save(&aside, &json) {
            Ok(()) => format!("the new credentials were saved to {}", aside.display()),
            Err(err) => format!("the new credentials could not be saved ({err})"),
        };
        Err(AcmeError::permanent(format!(
            "the key rollover of account {} at {} could not be confirmed: {new_key}, and the old key does not work either; {kept}; the old credentials stay in place: run `evercert account show` to see what the CA says",
            self.info.id, self.directory
        )))
    }

    /// Deactivates the account at the CA, checks that the CA says so, and only then moves
    /// its local files aside. On any doubt nothing is moved.
    pub async fn deactivate(self, state_dir: &Path) -> Result<PathBuf, AcmeError> {
        let dir = account_dir(state_dir, &self.directory);
        let id = self.info.id.clone();
        let answered = {
            let _one_lookup = self.lookup.lock().await;
            self.http.shared.watch_account(self.account.id());
            let result = self.account.clone().deactivate().await;
            let body = self.http.shared.take_account_answer();
            result.map_err(|err| self.classify(err, Operation::Deactivate))?;
            body.as_deref().and_then(AccountStatus::from_body)
        };
        let status = match answered {
            Some(AccountStatus::Deactivated) => AccountStatus::Deactivated,
            // The CA said success without saying "deactivated": ask it.
            _ => self.account_status().await.map_err(|err| {
                AcmeError::permanent(format!(
                    "the CA at {} did not confirm the deactivation of account {id}, and the lookup failed: {err}; nothing was moved: run `evercert account deactivate` again",
                    self.directory
                ))
            })?,
        };
        if !status.is_gone() {
            return Err(AcmeError::permanent(format!(
                "the CA at {} answered the deactivation of account {id} with success, but the account is still {status}; nothing was moved: run `evercert account deactivate` again, or deactivate it through the CA",
                self.directory
            )));
        }
        let aside = dir.with_extension(format!("deactivated-{}", now_compact()));
        std::fs::rename(&dir, &aside).map_err(|err| {
            AcmeError::permanent(format!(
                "the account was deactivated but {} could not be moved aside: {err}; remove it by hand",
                dir.display()
            ))
        })?;
        Ok(aside)
    }
}

fn now_compact() -> String {
    crate::units::compact_stamp(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_account_keeps_its_whole_name() {
        let state = tempfile::tempdir().unwrap();
        let directory = "https://127.0.0.1:14000/dir";
        let dir = account_dir(state.path(), directory);
        std::fs::create_dir_all(&dir).unwrap();
        let aside = forget_account(state.path(), directory).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let moved = aside.file_name().unwrap().to_string_lossy().into_owned();
        assert!(moved.starts_with(&format!("{name}.gone-")), "{moved}");
        assert!(aside.is_dir() && !dir.exists());
    }

    #[test]
    fn accounts_are_separate_per_directory() {
        let state = Path::new("/var/lib/evercert");
        let production = account_dir(state, "https://acme-v02.api.letsencrypt.org/directory");
        let staging = account_dir(
            state,
            "https://acme-staging-v02.api.letsencrypt.org/directory",
        );
        let private_a = account_dir(state, "https://ca.internal:9000/acme/a/directory");
        let private_b = account_dir(state, "https://ca.internal:9000/acme/b/directory");
        assert_ne!(production, staging);
        assert_ne!(private_a, private_b);
        assert!(production.starts_with("/var/lib/evercert/accounts"));
        assert!(
            production
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("acme-v02.api.letsencrypt.org-")
        );
    }

    #[test]
    fn account_bodies_are_read_by_status() {
        let status = |body: &str| AccountStatus::from_body(body.as_bytes());
        assert_eq!(status(r#"{"status":"valid"}"#), Some(AccountStatus::Valid));
        assert_eq!(
            status(r#"{"status":"deactivated","contact":[]}"#),
            Some(AccountStatus::Deactivated)
        );
        assert_eq!(
            status(r#"{"status":"revoked"}"#),
            Some(AccountStatus::Revoked)
        );
        assert!(status(r#"{"status":"odd"}"#).unwrap().is_gone());
        assert_eq!(status("{}"), None);
        assert_eq!(status("not json"), None);
        assert!(!AccountStatus::Valid.is_gone());
        assert!(AccountStatus::Unknown.is_gone());
    }
}
