//! Azure Blob Storage / ADLS Gen2 stores: builds an `object_store` Azure client for a parsed
//! [`AzureUrl`], choosing credentials in a documented order of precedence:
//!
//! 1. a SAS token in the URL's query;
//! 2. `AZURE_STORAGE_CONNECTION_STRING` (account key, SAS, or `UseDevelopmentStorage=true`);
//! 3. `AZURE_STORAGE_ACCOUNT_KEY` (shared key);
//! 4. `AZURE_STORAGE_SAS_TOKEN`;
//! 5. then `object_store`'s own chain from the environment: service principal
//!    (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`), workload identity
//!    (`AZURE_FEDERATED_TOKEN_FILE`), Azure CLI (`AZURE_USE_AZURE_CLI=true`), managed identity.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use crate::location::AzureUrl;

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
    c
}

fn sas_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Builds the store for one container. Errors never include credential values.
pub fn build_store(a: &AzureUrl) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let mut b = MicrosoftAzureBuilder::from_env().with_container_name(&a.container);
    if let Some(acct) = &a.account {
        b = b.with_account(acct);
    }
    if let Some(ep) = &a.endpoint {
        b = b
            .with_endpoint(ep.clone())
            .with_allow_http(true)
            .with_use_emulator(true);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(sas) = &a.sas {
        b = b.with_sas_authorization(sas.clone());
    } else if let Some(cs) = env("AZURE_STORAGE_CONNECTION_STRING") {
        let c = parse_connection_string(&cs);
        if c.development {
            b = b.with_use_emulator(true).with_allow_http(true);
        }
        if a.account.is_none()
            && let Some(n) = &c.account_name
        {
            b = b.with_account(n);
        }
        if let Some(ep) = c.blob_endpoint.filter(|_| a.endpoint.is_none()) {
            if ep.starts_with("http://") {
                b = b.with_allow_http(true).with_use_emulator(true);
            }
            b = b.with_endpoint(ep);
        }
        if let Some(k) = c.account_key {
            b = b.with_access_key(k);
        } else if let Some(s) = c.sas {
            b = b.with_sas_authorization(sas_pairs(&s));
        }
    } else if let Some(k) = env("AZURE_STORAGE_ACCOUNT_KEY") {
        b = b.with_access_key(k);
    } else if let Some(s) = env("AZURE_STORAGE_SAS_TOKEN") {
        b = b.with_config(AzureConfigKey::SasKey, s);
    }
    Ok(Arc::new(b.build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse_connection_string("UseDevelopmentStorage=true").development);
        let s = parse_connection_string(
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x",
        );
        assert_eq!(s.sas.as_deref(), Some("sv=1&sig=x"));
    }
}
