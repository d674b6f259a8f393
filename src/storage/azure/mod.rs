//! Azure Blob Storage / ADLS Gen2 stores: decides which one credential a location uses, and
//! builds the `object_store` Azure client for it, with the retry and timeout settings.
//!
//! Exactly one credential is chosen per location, in this order (first match wins):
//!
//! 1. a SAS token in the URL's query;
//! 2. the source's own `storage_options` (payload), checked in the order below;
//! 3. the environment, checked in the order below.
//!
//! Within options or environment: connection string (`connection_string`,
//! `AZURE_STORAGE_CONNECTION_STRING`), shared key (`account_key`, `AZURE_STORAGE_ACCOUNT_KEY`),
//! SAS token (`sas_token`, `AZURE_STORAGE_SAS_TOKEN`), bearer token (`bearer_token`,
//! `AZURE_STORAGE_TOKEN`), service principal (`client_id` + `client_secret` + `tenant_id`,
//! `AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/`AZURE_TENANT_ID`), workload identity
//! (`federated_token_file` + `client_id` + `tenant_id`, `AZURE_FEDERATED_TOKEN_FILE`), Azure
//! CLI (`use_azure_cli`, `AZURE_USE_AZURE_CLI=true`), managed identity (`use_managed_identity`,
//! `AZURE_USE_MANAGED_IDENTITY=true`, or `IDENTITY_ENDPOINT`/`MSI_ENDPOINT` set by the host),
//! anonymous (`skip_signature`, `AZURE_SKIP_SIGNATURE=true`).
//!
//! A source with credentials in its `storage_options` never falls back to the environment's,
//! so sources of one job cannot borrow each other's secrets. A connection string or account
//! key that names another account is skipped, not sent. Emulator URLs without a credential
//! use the emulator's published development key. Nothing found: one error naming the account
//! and every place looked, before any request is made (no silent probing of a metadata
//! endpoint that is not there).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::azure::MicrosoftAzureBuilder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

pub mod urls;

pub use urls::{AzureUrl, CLOUD_SUFFIXES, PUBLIC_SUFFIX, UrlError, parse_azure};

/// The Azure Storage emulator's published development key (not a secret).
pub const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error(
        "no credential for Azure storage account {account:?}: looked for a SAS token in the URL, {looked}; set one of them (see `nuvyn-executor --help`, AZURE CREDENTIALS)"
    )]
    NoCredential { account: String, looked: String },
    #[error(
        "no storage account for {shown}: az:// URLs take the account from AZURE_STORAGE_ACCOUNT_NAME, storage_options.account_name, or a connection string"
    )]
    NoAccount { shown: String },
    #[error("incomplete {method} for Azure storage account {account:?}: {missing} is not set")]
    Incomplete {
        account: String,
        method: &'static str,
        missing: String,
    },
    #[error("{field}: {reason}")]
    BadSetting { field: String, reason: String },
    #[error("cannot build the Azure client for account {account:?}: {reason}")]
    Build { account: String, reason: String },
}

/// The option names a payload's `storage_options` accepts (after dropping an `azure_storage_`
/// or `azure_` prefix, so delta-rs / object_store spellings work too).
pub const OPTION_KEYS: &[&str] = &[
    "account_name",
    "account_key",
    "sas_token",
    "connection_string",
    "bearer_token",
    "client_id",
    "client_secret",
    "tenant_id",
    "federated_token_file",
    "use_azure_cli",
    "use_managed_identity",
    "msi_endpoint",
    "skip_signature",
    "endpoint",
];

fn canonical_key(k: &str) -> Option<&'static str> {
    let k = k.trim().to_ascii_lowercase();
    let k = k
        .strip_prefix("azure_storage_")
        .or_else(|| k.strip_prefix("azure_"))
        .unwrap_or(&k);
    let k = match k {
        "access_key" | "master_key" | "key" => "account_key",
        "sas_key" | "sas" => "sas_token",
        "token" => "bearer_token",
        "authority_id" => "tenant_id",
        "account" => "account_name",
        other => other,
    };
    OPTION_KEYS.iter().find(|o| **o == k).copied()
}

/// Per-source storage settings from the payload. Holds secrets: its `Debug` shows key names
/// only, and it is never serialised.
#[derive(Clone, Default, PartialEq)]
pub struct StorageOptions(BTreeMap<&'static str, String>);

impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl StorageOptions {
    /// Builds options from key/value pairs; `field` prefixes the names in errors
    /// (`sources[1].storage_options`).
    pub fn from_pairs<'a>(
        field: &str,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AzureError> {
        let mut out = BTreeMap::new();
        for (k, v) in pairs {
            let key = canonical_key(k).ok_or_else(|| AzureError::BadSetting {
                field: format!("{field}.{k}"),
                reason: format!("unknown storage option; known: {}", OPTION_KEYS.join(", ")),
            })?;
            if out.insert(key, v.to_string()).is_some() {
                return Err(AzureError::BadSetting {
                    field: format!("{field}.{k}"),
                    reason: format!("{key} is given twice"),
                });
            }
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the option was given at all (in any accepted spelling), even empty.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The secret values, so that they can be redacted wherever text leaves the process.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(k, _)| {
                matches!(
                    **k,
                    "account_key"
                        | "sas_token"
                        | "connection_string"
                        | "bearer_token"
                        | "client_secret"
                )
            })
            .map(|(_, v)| v.as_str())
    }
}

/// The parts of a connection string that matter here.
#[derive(Debug, Default, PartialEq)]
pub struct ConnectionString {
    pub account_name: Option<String>,
    pub account_key: Option<String>,
    pub sas: Option<String>,
    pub blob_endpoint: Option<String>,
    pub development: bool,
}

pub fn parse_connection_string(s: &str) -> ConnectionString {
    let mut c = ConnectionString::default();
    for part in s.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "accountname" => c.account_name = Some(v.trim().to_string()),
            "accountkey" => c.account_key = Some(v.trim().to_string()),
            "sharedaccesssignature" => c.sas = Some(v.trim().trim_start_matches('?').to_string()),
            "blobendpoint" => c.blob_endpoint = Some(v.trim().trim_end_matches('/').to_string()),
            "usedevelopmentstorage" => c.development = v.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    if c.development {
        c.account_name
            .get_or_insert_with(|| EMULATOR_ACCOUNT.into());
        c.blob_endpoint
            .get_or_insert_with(|| format!("http://127.0.0.1:10000/{EMULATOR_ACCOUNT}"));
        c.account_key.get_or_insert_with(|| EMULATOR_KEY.into());
    }
    c
}

fn sas_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The credential chosen for a location.
#[derive(Clone, PartialEq)]
pub enum Credential {
    Sas(Vec<(String, String)>),
    SharedKey(String),
    Bearer(String),
    ServicePrincipal {
        client_id: String,
        client_secret: String,
        tenant_id: String,
    },
    WorkloadIdentity {
        client_id: String,
        tenant_id: String,
        token_file: String,
    },
    AzureCli,
    ManagedIdentity {
        client_id: Option<String>,
        endpoint: Option<String>,
    },
    Anonymous,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sas(_) => "Sas(..)",
            Self::SharedKey(_) => "SharedKey(..)",
            Self::Bearer(_) => "Bearer(..)",
            Self::ServicePrincipal { .. } => "ServicePrincipal(..)",
            Self::WorkloadIdentity { .. } => "WorkloadIdentity(..)",
            Self::AzureCli => "AzureCli",
            Self::ManagedIdentity { .. } => "ManagedIdentity(..)",
            Self::Anonymous => "Anonymous",
        })
    }
}

/// What [`resolve`] decided: the credential, where it came from (for error messages), and
/// the account and endpoint it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub credential: Credential,
    /// e.g. "shared key from AZURE_STORAGE_ACCOUNT_KEY"; never holds a secret.
    pub method: String,
    pub account: String,
    /// A custom endpoint (emulator, private link), path-style: `<endpoint>/<container>/...`.
    pub endpoint: Option<String>,
}

fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// One place credentials are looked up in: a source's options or the environment.
struct Layer<'a> {
    get: Lookup<'a>,
    /// How a key is named to users in this layer.
    name: Box<dyn Fn(&str) -> String + 'a>,
}

fn env_name(key: &str) -> String {
    match key {
        "account_name" => "AZURE_STORAGE_ACCOUNT_NAME",
        "account_key" => "AZURE_STORAGE_ACCOUNT_KEY",
        "sas_token" => "AZURE_STORAGE_SAS_TOKEN",
        "connection_string" => "AZURE_STORAGE_CONNECTION_STRING",
        "bearer_token" => "AZURE_STORAGE_TOKEN",
        "client_id" => "AZURE_CLIENT_ID",
        "client_secret" => "AZURE_CLIENT_SECRET",
        "tenant_id" => "AZURE_TENANT_ID",
        "federated_token_file" => "AZURE_FEDERATED_TOKEN_FILE",
        "use_azure_cli" => "AZURE_USE_AZURE_CLI",
        "use_managed_identity" => "AZURE_USE_MANAGED_IDENTITY",
        "msi_endpoint" => "AZURE_MSI_ENDPOINT",
        "skip_signature" => "AZURE_SKIP_SIGNATURE",
        "endpoint" => "AZURE_STORAGE_ENDPOINT",
        other => other,
    }
    .to_string()
}

/// Finds the credential in one layer; `Ok(None)` when the layer has none.
fn from_layer(
    l: &Layer,
    account: &mut Option<String>,
    endpoint: &mut Option<String>,
    skipped: &mut Vec<String>,
) -> Result<Option<(Credential, String)>, AzureError> {
    let get = |k: &str| (l.get)(k).filter(|v| !v.trim().is_empty());
    let same_account = |named: &Option<String>, account: &Option<String>| match (named, account) {
        (Some(n), Some(a)) => n == a,
        _ => true,
    };
    if let Some(cs) = get("connection_string") {
        let c = parse_connection_string(&cs);
        if same_account(&c.account_name, account) {
            if account.is_none() {
                account.clone_from(&c.account_name);
            }
            if endpoint.is_none() {
                endpoint.clone_from(&c.blob_endpoint);
            }
            let what = format!("connection string from {}", (l.name)("connection_string"));
            if let Some(k) = c.account_key {
                return Ok(Some((Credential::SharedKey(k), what)));
            }
            if let Some(s) = c.sas {
                return Ok(Some((Credential::Sas(sas_pairs(&s)), what)));
            }
            return Err(AzureError::Incomplete {
                account: account.clone().unwrap_or_default(),
                method: "connection string",
                missing: format!(
                    "AccountKey or SharedAccessSignature in {}",
                    (l.name)("connection_string")
                ),
            });
        }
        skipped.push(format!(
            "{} (it is for account {:?})",
            (l.name)("connection_string"),
            c.account_name.unwrap_or_default()
        ));
    }
    let named = get("account_name");
    if account.is_none() {
        account.clone_from(&named);
    }
    if let Some(k) = get("account_key") {
        if same_account(&named, account) {
            let what = format!("shared key from {}", (l.name)("account_key"));
            return Ok(Some((Credential::SharedKey(k), what)));
        }
        skipped.push(format!(
            "{} (its {} names account {:?})",
            (l.name)("account_key"),
            (l.name)("account_name"),
            named.unwrap_or_default()
        ));
    }
    if let Some(s) = get("sas_token") {
        let what = format!("SAS token from {}", (l.name)("sas_token"));
        return Ok(Some((Credential::Sas(sas_pairs(&s)), what)));
    }
    if let Some(t) = get("bearer_token") {
        let what = format!("bearer token from {}", (l.name)("bearer_token"));
        return Ok(Some((Credential::Bearer(t), what)));
    }
    let (client_id, tenant_id) = (get("client_id"), get("tenant_id"));
    let acct_shown = account.clone().unwrap_or_default();
    let need = |v: Option<String>, key: &str, method: &'static str| {
        v.ok_or_else(|| AzureError::Incomplete {
            account: acct_shown.clone(),
            method,
            missing: (l.name)(key),
        })
    };
    if let Some(secret) = get("client_secret") {
        const M: &str = "service principal";
        let what = format!("service principal from {}", (l.name)("client_secret"));
        return Ok(Some((
            Credential::ServicePrincipal {
                client_id: need(client_id, "client_id", M)?,
                client_secret: secret,
                tenant_id: need(tenant_id, "tenant_id", M)?,
            },
            what,
        )));
    }
    if let Some(file) = get("federated_token_file") {
        const M: &str = "workload identity";
        let what = format!(
            "workload identity from {}",
            (l.name)("federated_token_file")
        );
        return Ok(Some((
            Credential::WorkloadIdentity {
                client_id: need(client_id, "client_id", M)?,
                tenant_id: need(tenant_id, "tenant_id", M)?,
                token_file: file,
            },
            what,
        )));
    }
    if truthy(get("use_azure_cli").as_deref()) {
        return Ok(Some((
            Credential::AzureCli,
            format!("Azure CLI ({})", (l.name)("use_azure_cli")),
        )));
    }
    let msi_endpoint = get("msi_endpoint");
    if truthy(get("use_managed_identity").as_deref()) || msi_endpoint.is_some() {
        return Ok(Some((
            Credential::ManagedIdentity {
                client_id,
                endpoint: msi_endpoint,
            },
            format!("managed identity ({})", (l.name)("use_managed_identity")),
        )));
    }
    if truthy(get("skip_signature").as_deref()) {
        return Ok(Some((
            Credential::Anonymous,
            format!("anonymous access ({})", (l.name)("skip_signature")),
        )));
    }
    Ok(None)
}

/// Chooses the credential for `a`. `env` reads the environment (a map in tests).
pub fn resolve(
    a: &AzureUrl,
    opts: &StorageOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, AzureError> {
    let mut account = a.account.clone();
    let mut endpoint = a.endpoint.clone();
    let env_layer = Layer {
        get: Box::new(|k: &str| match k {
            // Hosts with a managed identity announce its endpoint under these names.
            "msi_endpoint" => env(&env_name(k))
                .or_else(|| env("IDENTITY_ENDPOINT"))
                .or_else(|| env("MSI_ENDPOINT")),
            _ => env(&env_name(k)),
        }),
        name: Box::new(env_name),
    };
    let opts_layer = Layer {
        get: Box::new(|k: &str| opts.get(k).map(str::to_string)),
        name: Box::new(|k: &str| format!("storage_options.{k}")),
    };
    if endpoint.is_none() {
        // A private or emulator endpoint for an account named in the URL.
        endpoint = opts
            .get("endpoint")
            .map(str::to_string)
            .or_else(|| env("AZURE_STORAGE_ENDPOINT"))
            .map(|e| e.trim_end_matches('/').to_string());
    }
    let mut skipped = Vec::new();
    let found = if let Some(sas) = &a.sas {
        if account.is_none() {
            account = opts
                .get("account_name")
                .map(str::to_string)
                .or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME"));
        }
        Some((
            Credential::Sas(sas.clone()),
            "the SAS token in the URL".into(),
        ))
    } else {
        match from_layer(&opts_layer, &mut account, &mut endpoint, &mut skipped)? {
            Some(f) => Some(f),
            None => from_layer(&env_layer, &mut account, &mut endpoint, &mut skipped)?,
        }
    };
    let account = match account {
        Some(a) => a,
        None if endpoint.is_some() => EMULATOR_ACCOUNT.to_string(),
        None => return Err(AzureError::NoAccount { shown: a.display() }),
    };
    let (credential, method) = match found {
        Some(f) => f,
        // Only an emulator has a well-known key; a real account never gets a guessed one.
        None if a.endpoint.is_some() => (
            Credential::SharedKey(EMULATOR_KEY.into()),
            "the emulator's development key".into(),
        ),
        None => {
            let mut looked = vec![
                "storage_options (payload)".to_string(),
                "AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_TOKEN, AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_USE_AZURE_CLI, AZURE_USE_MANAGED_IDENTITY, AZURE_SKIP_SIGNATURE".to_string(),
            ];
            if !skipped.is_empty() {
                looked.push(format!("skipped {}", skipped.join(", ")));
            }
            return Err(AzureError::NoCredential {
                account,
                looked: looked.join("; "),
            });
        }
    };
    Ok(Resolved {
        credential,
        method,
        account,
        endpoint,
    })
}

/// Retry and timeout settings for every storage request, from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSettings {
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_initial: Duration,
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self {
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
        }
    }
}

/// The variables [`RequestSettings::from_env`] reads, with what they mean (for `--help`).
pub const REQUEST_ENV: &[(&str, &str)] = &[
    (
        "NUVYN_STORAGE_MAX_RETRIES",
        "retries per request on 429/5xx/timeouts/dropped connections (default 10)",
    ),
    (
        "NUVYN_STORAGE_RETRY_TIMEOUT_SECS",
        "give up retrying a request after this long (default 180)",
    ),
    (
        "NUVYN_STORAGE_TIMEOUT_SECS",
        "timeout of one request (default 120)",
    ),
    (
        "NUVYN_STORAGE_CONNECT_TIMEOUT_SECS",
        "timeout of one connection attempt (default 10)",
    ),
    (
        "NUVYN_STORAGE_BACKOFF_MS",
        "first retry delay, doubled per retry up to 15 s (default 100)",
    ),
];

impl RequestSettings {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, AzureError> {
        let mut s = Self::default();
        let num = |name: &str| -> Result<Option<u64>, AzureError> {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| AzureError::BadSetting {
                        field: name.to_string(),
                        reason: format!("expected a whole number, got {v:?}"),
                    })
                })
                .transpose()
        };
        if let Some(n) = num("NUVYN_STORAGE_MAX_RETRIES")? {
            s.max_retries = n as usize;
        }
        if let Some(n) = num("NUVYN_STORAGE_RETRY_TIMEOUT_SECS")? {
            s.retry_timeout = Duration::from_secs(n);
        }
        if let Some(n) = num("NUVYN_STORAGE_TIMEOUT_SECS")? {
            s.request_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = num("NUVYN_STORAGE_CONNECT_TIMEOUT_SECS")? {
            s.connect_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = num("NUVYN_STORAGE_BACKOFF_MS")? {
            s.backoff_initial = Duration::from_millis(n.max(1));
        }
        Ok(s)
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.backoff_initial,
                max_backoff: Duration::from_secs(15).max(self.backoff_initial),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    fn client(&self) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
    }
}

pub fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Builds the store for one container with the resolved credential. Errors never include
/// credential values.
pub fn build_store(
    a: &AzureUrl,
    r: &Resolved,
    settings: &RequestSettings,
) -> Result<Arc<dyn ObjectStore>, AzureError> {
    let mut b = MicrosoftAzureBuilder::new()
        .with_container_name(&a.container)
        .with_account(&r.account)
        .with_retry(settings.retry())
        .with_client_options(settings.client());
    if r.endpoint.is_none()
        && let Some(ep) = a.cloud_endpoint(&r.account)
    {
        // A sovereign cloud: the account lives under its cloud's suffix.
        b = b.with_endpoint(ep);
    }
    if let Some(ep) = &r.endpoint {
        // A custom endpoint is used path-style (`<endpoint>/<container>/<path>`), which is
        // how the emulator on any host and port is reached; object_store's own emulator mode
        // would only look at AZURITE_BLOB_STORAGE_URL.
        b = b
            .with_endpoint(ep.clone())
            .with_allow_http(ep.starts_with("http://"));
    }
    b = match &r.credential {
        Credential::Sas(pairs) => b.with_sas_authorization(pairs.clone()),
        Credential::SharedKey(k) => b.with_access_key(k),
        Credential::Bearer(t) => b.with_bearer_token_authorization(t),
        Credential::ServicePrincipal {
            client_id,
            client_secret,
            tenant_id,
        } => b.with_client_secret_authorization(client_id, client_secret, tenant_id),
        Credential::WorkloadIdentity {
            client_id,
            tenant_id,
            token_file,
        } => b
            .with_client_id(client_id)
            .with_tenant_id(tenant_id)
            .with_federated_token_file(token_file),
        Credential::AzureCli => b.with_use_azure_cli(true),
        Credential::ManagedIdentity {
            client_id,
            endpoint,
        } => {
            if let Some(id) = client_id {
                b = b.with_client_id(id);
            }
            if let Some(ep) = endpoint {
                b = b.with_msi_endpoint(ep);
            }
            b
        }
        Credential::Anonymous => b.with_skip_signature(true),
    };
    let store = b.build().map_err(|e| AzureError::Build {
        account: r.account.clone(),
        reason: crate::redact::text(&e.to_string()),
    })?;
    Ok(Arc::new(store))
}

/// True when a storage error means the credential was refused or could not be obtained.
pub fn is_auth_error(text: &str) -> bool {
    const MARKS: &[&str] = &[
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "InsufficientAccountPermissions",
        "NoAuthenticationInformation",
        "InvalidAuthenticationInfo",
        "token request",
        "get-access-token",
        "Error getting token",
    ];
    auth_status(text).is_some() || MARKS.iter().any(|m| text.contains(m))
}

/// The HTTP status of a refused request (`401` or `403`) when the error's text carries one as
/// a status, e.g. `403 Forbidden`; digits inside a port, a host or a path are not a status.
pub fn auth_status(text: &str) -> Option<&'static str> {
    ["401", "403"].into_iter().find(|status| {
        text.match_indices(status).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + status.len()..].chars().next();
            let digit_or = |c: Option<char>, extra: &[char]| {
                c.is_some_and(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
            };
            // A port follows ':', a path segment or host label '/' or '.'.
            !digit_or(before, &[':', '/', '.', '-', '_'])
                && !digit_or(after, &['.', '/', '-', '_', ':'])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    fn opts(pairs: &[(&str, &str)]) -> StorageOptions {
        StorageOptions::from_pairs("storage_options", pairs.iter().copied()).unwrap()
    }

    /// A refusal is recognised by its status or Azure code, never by digits in an address
    /// (a random port such as 40123 once made a 400 look like a refused credential).
    #[test]
    fn refusals_are_told_by_status_not_by_any_digits() {
        let refused = [
            "Server returned non-2xx status code: 403 Forbidden: <Error>",
            "HTTP status client error (401 Unauthorized) for url",
            "<Code>AuthorizationPermissionMismatch</Code>",
        ];
        for text in refused {
            assert!(is_auth_error(text), "{text}");
        }
        let other = [
            "error sending request for url (http://127.0.0.1:40123/acct/lake): 400 Bad Request",
            "http://127.0.0.1:14030/acct?restype=container: 404 Not Found",
            "https://acct.blob.core.windows.net/raw/part-00401.csv: 500 Internal Server Error",
            "https://acct403.blob.core.windows.net/raw/x-403_y: 400 Bad Request",
        ];
        for text in other {
            assert!(!is_auth_error(text), "{text}");
            assert_eq!(auth_status(text), None, "{text}");
        }
        assert_eq!(auth_status(refused[0]), Some("403"));
        assert_eq!(auth_status(refused[1]), Some("401"));
    }

    const REAL: &str = "abfss://lake@acct1.dfs.core.windows.net/raw";

    #[test]
    fn connection_strings() {
        let c = parse_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abc==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        );
        assert_eq!(c.account_name.as_deref(), Some("devstoreaccount1"));
        assert_eq!(c.account_key.as_deref(), Some("abc=="));
        assert_eq!(
            c.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        let d = parse_connection_string("UseDevelopmentStorage=true");
        assert!(d.development);
        assert_eq!(d.account_key.as_deref(), Some(EMULATOR_KEY));
        let s = parse_connection_string(
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x",
        );
        assert_eq!(s.sas.as_deref(), Some("sv=1&sig=x"));
    }

    #[test]
    fn precedence_url_sas_then_options_then_environment() {
        let env = env_of(&[
            ("AZURE_STORAGE_ACCOUNT_KEY", "envkey"),
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_CLIENT_SECRET", "secret"),
            ("AZURE_TENANT_ID", "tenant"),
        ]);
        let with_sas = parse_azure(&format!("{REAL}?sv=1&sig=abc")).unwrap();
        let r = resolve(&with_sas, &opts(&[("account_key", "k")]), &env).unwrap();
        assert!(matches!(r.credential, Credential::Sas(_)));
        assert_eq!(r.method, "the SAS token in the URL");

        let a = parse_azure(REAL).unwrap();
        let r = resolve(&a, &opts(&[("sas_token", "sv=2&sig=x")]), &env).unwrap();
        assert_eq!(r.method, "SAS token from storage_options.sas_token");
        assert_eq!(
            r.credential,
            Credential::Sas(vec![("sv".into(), "2".into()), ("sig".into(), "x".into())])
        );

        // Options without a credential (only the account) fall through to the environment.
        let r = resolve(&a, &opts(&[("account_name", "acct1")]), &env).unwrap();
        assert_eq!(r.credential, Credential::SharedKey("envkey".into()));
        assert_eq!(r.method, "shared key from AZURE_STORAGE_ACCOUNT_KEY");

        // The key outranks the service principal in the same layer.
        let env2 = env_of(&[
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_CLIENT_SECRET", "secret"),
            ("AZURE_TENANT_ID", "tenant"),
        ]);
        let r = resolve(&a, &StorageOptions::default(), &env2).unwrap();
        assert!(matches!(r.credential, Credential::ServicePrincipal { .. }));
        assert_eq!(r.account, "acct1");
    }

    #[test]
    fn a_source_with_its_own_credential_never_uses_the_environments() {
        let env = env_of(&[("AZURE_STORAGE_ACCOUNT_KEY", "envkey")]);
        let a = parse_azure(REAL).unwrap();
        let r = resolve(
            &a,
            &opts(&[("azure_storage_account_key", "sourcekey")]),
            &env,
        )
        .unwrap();
        assert_eq!(r.credential, Credential::SharedKey("sourcekey".into()));
        assert_eq!(r.method, "shared key from storage_options.account_key");
    }

    #[test]
    fn keys_for_another_account_are_skipped_not_sent() {
        let env = env_of(&[
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=other;AccountKey=k1",
            ),
            ("AZURE_STORAGE_ACCOUNT_NAME", "other2"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "k2"),
        ]);
        let a = parse_azure(REAL).unwrap();
        let e = resolve(&a, &StorageOptions::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no credential for Azure storage account \"acct1\""),
            "{e}"
        );
        assert!(
            e.contains("skipped AZURE_STORAGE_CONNECTION_STRING (it is for account \"other\")"),
            "{e}"
        );
        assert!(e.contains("AZURE_STORAGE_ACCOUNT_KEY (its AZURE_STORAGE_ACCOUNT_NAME names account \"other2\")"), "{e}");
        assert!(!e.contains("k1") && !e.contains("k2"), "{e}");
    }

    #[test]
    fn az_urls_take_account_and_endpoint_from_a_connection_string() {
        let env = env_of(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abc==;BlobEndpoint=http://127.0.0.1:10055/devstoreaccount1;",
        )]);
        let a = parse_azure("az://lake/x").unwrap();
        let r = resolve(&a, &StorageOptions::default(), &env).unwrap();
        assert_eq!(r.account, "devstoreaccount1");
        assert_eq!(
            r.endpoint.as_deref(),
            Some("http://127.0.0.1:10055/devstoreaccount1")
        );
        assert_eq!(
            r.method,
            "connection string from AZURE_STORAGE_CONNECTION_STRING"
        );
        let e = resolve(&a, &StorageOptions::default(), &env_of(&[])).unwrap_err();
        assert!(matches!(e, AzureError::NoAccount { .. }), "{e}");
    }

    #[test]
    fn incomplete_and_missing_credentials_are_named() {
        let a = parse_azure(REAL).unwrap();
        let env = env_of(&[("AZURE_CLIENT_SECRET", "s"), ("AZURE_CLIENT_ID", "id")]);
        let e = resolve(&a, &StorageOptions::default(), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "incomplete service principal for Azure storage account \"acct1\": AZURE_TENANT_ID is not set"
        );
        let e = resolve(&a, &StorageOptions::default(), &env_of(&[])).unwrap_err();
        assert!(matches!(e, AzureError::NoCredential { .. }));
        // The emulator has a published key; a real account never gets a guessed one.
        let emu = parse_azure("http://127.0.0.1:10000/devstoreaccount1/lake").unwrap();
        let r = resolve(&emu, &StorageOptions::default(), &env_of(&[])).unwrap();
        assert_eq!(r.credential, Credential::SharedKey(EMULATOR_KEY.into()));
        // Hosts with a managed identity announce it; nothing else is probed.
        let r = resolve(
            &a,
            &StorageOptions::default(),
            &env_of(&[("IDENTITY_ENDPOINT", "http://169.254.169.254/x")]),
        )
        .unwrap();
        assert!(matches!(r.credential, Credential::ManagedIdentity { .. }));
    }

    #[test]
    fn storage_option_names_are_checked_and_secrets_hidden() {
        let e = StorageOptions::from_pairs("sources[1].storage_options", [("acount_key", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sources[1].storage_options.acount_key: unknown storage option"),
            "{e}"
        );
        let o = opts(&[("account_key", "hunter2"), ("account_name", "a")]);
        assert_eq!(format!("{o:?}"), "{\"account_key\", \"account_name\"}");
        assert_eq!(o.secrets().collect::<Vec<_>>(), ["hunter2"]);
    }

    #[test]
    fn request_settings_from_env() {
        let s = RequestSettings::from_env(&env_of(&[
            ("NUVYN_STORAGE_MAX_RETRIES", "3"),
            ("NUVYN_STORAGE_BACKOFF_MS", "10"),
        ]))
        .unwrap();
        assert_eq!(s.max_retries, 3);
        assert_eq!(s.backoff_initial, Duration::from_millis(10));
        let e = RequestSettings::from_env(&env_of(&[("NUVYN_STORAGE_TIMEOUT_SECS", "soon")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "NUVYN_STORAGE_TIMEOUT_SECS: expected a whole number, got \"soon\""
        );
    }
}
