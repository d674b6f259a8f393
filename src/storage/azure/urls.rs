//! The Azure URL forms users paste (`abfss://`, `https://<account>.blob|dfs.<suffix>`,
//! `wasbs://`, `az://`, emulator URLs) parsed into one [`AzureUrl`]: account, container,
//! path, endpoint and the SAS query kept apart from every display string.

use url::Url;

/// Why a string is not a usable Azure location; the location layer shows it
/// as an invalid or unsupported location.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("invalid location {shown}: {reason}")]
    Invalid { shown: String, reason: String },
    #[error("not an Azure storage URL: {0}")]
    NotAzure(String),
}

/// The parts of an Azure location, whatever form it was pasted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureUrl {
    /// `None` for `az://` (the account comes from configuration).
    pub account: Option<String>,
    pub container: String,
    /// The path inside the container, without leading or trailing slashes.
    pub path: String,
    /// `dfs` (ADLS Gen2) or `blob` endpoint, as the user wrote it.
    pub dfs: bool,
    /// Emulator endpoint (`http://127.0.0.1:10000/devstoreaccount1`), if the URL named one.
    pub endpoint: Option<String>,
    /// The URL's query (a SAS token), kept apart so that it never reaches a display string.
    pub sas: Option<Vec<(String, String)>>,
    /// The cloud's endpoint suffix from the URL (`core.windows.net`, sovereign clouds'
    /// `core.chinacloudapi.cn`, `core.usgovcloudapi.net`...), kept so that the account is
    /// addressed in its own cloud.
    pub suffix: String,
}

/// The public cloud's endpoint suffix.
pub const PUBLIC_SUFFIX: &str = "core.windows.net";

/// The Azure clouds' storage endpoint suffixes.
pub const CLOUD_SUFFIXES: &[&str] = &[
    PUBLIC_SUFFIX,
    "core.chinacloudapi.cn",
    "core.usgovcloudapi.net",
    "core.cloudapi.de",
];

impl AzureUrl {
    /// How the location is shown: the URL without its query.
    pub fn display(&self) -> String {
        let path = if self.path.is_empty() {
            String::new()
        } else {
            format!("/{}", self.path)
        };
        match (&self.endpoint, &self.account) {
            (Some(ep), _) => format!("{ep}/{}{path}", self.container),
            (None, Some(acct)) if self.dfs => {
                format!(
                    "abfss://{}@{acct}.dfs.{}{path}",
                    self.container, self.suffix
                )
            }
            (None, Some(acct)) => {
                format!(
                    "https://{acct}.blob.{}/{}{path}",
                    self.suffix, self.container
                )
            }
            (None, None) => format!("az://{}{path}", self.container),
        }
    }

    /// The URL of the container root, under which DataFusion and delta-rs find the store.
    /// Unique per account, endpoint and container, and never holding a secret.
    pub fn store_url(&self, account: &str, endpoint: Option<&str>) -> String {
        match endpoint {
            // A custom endpoint (emulator) keeps its own host space: the same names on Azure
            // are other data, and two emulators are two stores.
            Some(ep) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(ep, &mut h);
                let tag = std::hash::Hasher::finish(&h);
                format!("az://{}@{account}.e{tag:x}/", self.container)
            }
            None => format!("abfss://{}@{account}.dfs.{}/", self.container, self.suffix),
        }
    }

    /// The blob endpoint of `account` in this URL's cloud, where that is not the public
    /// cloud (object_store addresses the public one by itself).
    pub fn cloud_endpoint(&self, account: &str) -> Option<String> {
        (self.suffix != PUBLIC_SUFFIX).then(|| format!("https://{account}.blob.{}", self.suffix))
    }
}

/// `(service, cloud suffix)` of a host's part after the account (`dfs.core.windows.net`).
fn service_and_cloud(after_account: &str) -> Option<(bool, &str)> {
    let (service, cloud) = after_account.split_once('.')?;
    let dfs = match service {
        "dfs" => true,
        "blob" => false,
        _ => return None,
    };
    CLOUD_SUFFIXES.contains(&cloud).then_some((dfs, cloud))
}

fn azure_err(s: &str, reason: impl Into<String>) -> UrlError {
    UrlError::Invalid {
        shown: crate::redact::url(s),
        reason: reason.into(),
    }
}

fn valid_container(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !c.starts_with('-')
        && !c.contains("--")
        || c == "$root"
}

fn valid_account(a: &str) -> bool {
    (3..=24).contains(&a.len())
        && a.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
}

/// Parses every Azure form users paste: `https://acct.blob|dfs.core.windows.net/c/p`,
/// `abfs[s]://c@acct.dfs.core.windows.net/p`, `wasb[s]://c@acct.blob.core.windows.net/p`,
/// `az://c/p`, and emulator URLs `http://127.0.0.1:10000/devstoreaccount1/c/p`; a query is a
/// SAS token.
pub fn parse_azure(s: &str) -> Result<AzureUrl, UrlError> {
    let url = Url::parse(s).map_err(|e| azure_err(s, e.to_string()))?;
    let sas: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let sas = (!sas.is_empty()).then_some(sas);
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let segs: Vec<String> = url
        .path_segments()
        .map(|p| p.filter(|x| !x.is_empty()).map(percent_decode).collect())
        .unwrap_or_default();
    if let Some(seg) = segs.iter().find(|p| *p == "." || *p == "..") {
        return Err(azure_err(
            s,
            format!(
                "the path has a {seg:?} segment (also percent-encoded): name the folder itself"
            ),
        ));
    }
    let scheme = url.scheme().to_ascii_lowercase();
    let mut suffix = PUBLIC_SUFFIX.to_string();
    let (account, container, rest, dfs, endpoint) = match scheme.as_str() {
        "abfs" | "abfss" | "wasb" | "wasbs" => {
            let container = percent_decode(url.username());
            if container.is_empty() {
                return Err(azure_err(
                    s,
                    format!("{scheme}:// needs container@account.<endpoint>"),
                ));
            }
            let (acct, after) = host
                .split_once('.')
                .ok_or_else(|| azure_err(s, "the host must be <account>.dfs.core.windows.net"))?;
            let (dfs, cloud) = service_and_cloud(after).ok_or_else(|| {
                azure_err(
                    s,
                    format!(
                        "unknown Azure endpoint {after}: expected dfs.<cloud> or blob.<cloud>, <cloud> one of {}",
                        CLOUD_SUFFIXES.join(", ")
                    ),
                )
            })?;
            suffix = cloud.to_string();
            (Some(acct.to_string()), container, segs, dfs, None)
        }
        "az" | "azure" => {
            if !url.username().is_empty() {
                return Err(azure_err(
                    s,
                    "az:// takes az://<container>/<path>; the account comes from AZURE_STORAGE_ACCOUNT_NAME",
                ));
            }
            (None, host.clone(), segs, true, None)
        }
        "https" | "http" => {
            // `https://user@host/...`: a storage URL never carries user info, and a reader
            // might take the part before `@` for the host.
            if !url.username().is_empty() || url.password().is_some() {
                return Err(azure_err(
                    s,
                    "user info (`user@`) is not allowed in a storage URL",
                ));
            }
            let is_emulator = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1")
                || url.port() == Some(10000);
            if is_emulator {
                let mut it = segs.into_iter();
                let acct = it.next().ok_or_else(|| {
                    azure_err(
                        s,
                        "an emulator URL is http://host:port/<account>/<container>/<path>",
                    )
                })?;
                let container = it.next().ok_or_else(|| azure_err(s, "missing container"))?;
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                let endpoint = format!(
                    "{}://{}{port}/{acct}",
                    url.scheme(),
                    url.host_str().unwrap_or("")
                );
                (Some(acct), container, it.collect(), false, Some(endpoint))
            } else {
                let Some((acct, after)) = host.split_once('.') else {
                    return Err(azure_err(s, "not an Azure storage URL"));
                };
                let Some((dfs, cloud)) = service_and_cloud(after) else {
                    return Err(UrlError::NotAzure(crate::redact::url(s)));
                };
                let cloud = cloud.to_string();
                if scheme == "http" {
                    return Err(azure_err(s, "use https:// for Azure storage"));
                }
                let mut it = segs.into_iter();
                let container = it
                    .next()
                    .ok_or_else(|| azure_err(s, "missing container after the host"))?;
                suffix = cloud;
                (Some(acct.to_string()), container, it.collect(), dfs, None)
            }
        }
        other => return Err(azure_err(s, format!("not an Azure scheme: {other}"))),
    };
    if let Some(a) = &account
        && endpoint.is_none()
        && !valid_account(a)
    {
        return Err(azure_err(
            s,
            format!("invalid storage account name {a:?}: 3-24 lowercase letters and digits"),
        ));
    }
    if !valid_container(&container) {
        return Err(azure_err(
            s,
            format!("invalid container name {container:?}: 3-63 lowercase letters, digits and '-'"),
        ));
    }
    Ok(AzureUrl {
        account,
        container,
        path: rest.join("/"),
        dfs,
        endpoint,
        sas,
        suffix,
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_forms() {
        let cases = [
            (
                "https://acct1.blob.core.windows.net/cont/a/b.csv",
                Some("acct1"),
                "cont",
                "a/b.csv",
                false,
            ),
            (
                "https://acct1.dfs.core.windows.net/cont/dir/",
                Some("acct1"),
                "cont",
                "dir",
                true,
            ),
            (
                "abfss://cont@acct1.dfs.core.windows.net/x/y",
                Some("acct1"),
                "cont",
                "x/y",
                true,
            ),
            (
                "abfs://cont@acct1.dfs.core.windows.net",
                Some("acct1"),
                "cont",
                "",
                true,
            ),
            (
                "wasbs://cont@acct1.blob.core.windows.net/p",
                Some("acct1"),
                "cont",
                "p",
                false,
            ),
            ("az://cont/some/path", None, "cont", "some/path", true),
            (
                "http://127.0.0.1:10000/devstoreaccount1/cont/p/q",
                Some("devstoreaccount1"),
                "cont",
                "p/q",
                false,
            ),
        ];
        for (url, acct, cont, path, dfs) in cases {
            let a = parse_azure(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(a.account.as_deref(), acct, "{url}");
            assert_eq!(a.container, cont, "{url}");
            assert_eq!(a.path, path, "{url}");
            assert_eq!(a.dfs, dfs, "{url}");
        }
        let e = parse_azure("http://127.0.0.1:10000/devstoreaccount1/cont").unwrap();
        assert_eq!(
            e.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(e.display(), "http://127.0.0.1:10000/devstoreaccount1/cont");
    }

    #[test]
    fn sovereign_clouds_keep_their_suffix() {
        for (url, suffix) in [
            (
                "abfss://c1c@acct1.dfs.core.chinacloudapi.cn/p",
                "core.chinacloudapi.cn",
            ),
            (
                "https://acct1.blob.core.usgovcloudapi.net/c1c/p",
                "core.usgovcloudapi.net",
            ),
            (
                "wasbs://c1c@acct1.blob.core.cloudapi.de/p",
                "core.cloudapi.de",
            ),
        ] {
            let a = parse_azure(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(a.suffix, suffix);
            assert!(a.display().contains(suffix), "{}", a.display());
            assert!(a.store_url("acct1", None).contains(suffix));
            assert_eq!(
                a.cloud_endpoint("acct1"),
                Some(format!("https://acct1.blob.{suffix}"))
            );
        }
        let public = parse_azure("abfss://c1c@acct1.dfs.core.windows.net/p").unwrap();
        assert_eq!(public.cloud_endpoint("acct1"), None);
        let e = parse_azure("abfss://c1c@acct1.dfs.core.example.com/p").unwrap_err();
        assert!(e.to_string().contains("unknown Azure endpoint"), "{e}");
    }

    #[test]
    fn azure_sas_never_reaches_display() {
        let a = parse_azure(
            "https://acct1.blob.core.windows.net/cont/f.csv?sv=2022-11-02&sr=b&sig=S3CRET%3D",
        )
        .unwrap();
        assert!(
            a.sas
                .as_ref()
                .unwrap()
                .iter()
                .any(|(k, v)| k == "sig" && v == "S3CRET=")
        );
        assert!(!a.display().contains("S3CRET"));
        assert!(!a.store_url("acct1", None).contains("S3CRET"));
        for bad in [
            "https://acct1.blob.core.windows.net/Bad_Container/x",
            "abfss://acct1.dfs.core.windows.net/x",
            "https://acct1.blob.core.windows.net/",
            "https://example.com/cont/x?sig=S3CRET",
        ] {
            let e = parse_azure(bad).map(|a| format!("{a:?}")).expect_err(bad);
            assert!(!e.to_string().contains("S3CRET"), "{e}");
        }
    }
}
