//! Redaction of secrets from anything that may reach a log, an error, a job result or a
//! table: SAS tokens in URL queries, user:password in URLs, account keys in text.

/// A URL-ish string without its query (SAS tokens live there) and without user info.
pub fn url(s: &str) -> String {
    let no_query = match s.find('?') {
        Some(i) => &s[..i],
        None => s,
    };
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let host = authority
                .rsplit_once('@')
                .map(|(_, h)| h)
                .unwrap_or(authority);
            // abfss://container@account... keeps the container: it is not a secret.
            let host = if authority.contains(':') && authority.contains('@') {
                host.to_string()
            } else {
                authority.to_string()
            };
            format!("{scheme}://{host}{path}")
        }
        None => no_query.to_string(),
    }
}

/// Removes `sig=...`, `AccountKey=...` and similar secrets from free text (error messages
/// of libraries that echo the URL they were given).
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    const KEYS: [&str; 7] = [
        "sig=",
        // A SAS token's pairs in a library's Debug output: ("sig", "...").
        "\"sig\", \"",
        "AccountKey=",
        "SharedAccessSignature=",
        "client_secret=",
        "Bearer ",
        "SharedKey ",
    ];
    'outer: while !rest.is_empty() {
        for k in KEYS {
            if rest
                .get(..k.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(k))
            {
                out.push_str(k);
                out.push_str("REDACTED");
                let end = rest[k.len()..]
                    .find(|c: char| c == '&' || c == ';' || c == '"' || c.is_whitespace())
                    .map(|i| i + k.len())
                    .unwrap_or(rest.len());
                rest = &rest[end..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The longest reason from outside (a storage endpoint's answer, a library's error) kept in
/// a job result, `executor_runs` or an API answer.
pub const MAX_REASON_CHARS: usize = 500;

/// A reason fit to keep: secrets removed, cut to [`MAX_REASON_CHARS`] characters (a storage
/// endpoint's response body must not flow whole into results and tables).
pub fn reason(s: &str) -> String {
    let t = text(s);
    let n = t.chars().count();
    if n <= MAX_REASON_CHARS {
        return t;
    }
    let cut: String = t.chars().take(MAX_REASON_CHARS).collect();
    format!("{cut}… ({} more characters not kept)", n - MAX_REASON_CHARS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_queries_and_credentials() {
        assert_eq!(
            super::url("https://a.blob.core.windows.net/c/p?sv=1&sig=abc"),
            "https://a.blob.core.windows.net/c/p"
        );
        assert_eq!(super::url("http://user:pw@host/x"), "http://host/x");
        assert_eq!(
            super::url("abfss://cont@acct.dfs.core.windows.net/p"),
            "abfss://cont@acct.dfs.core.windows.net/p"
        );
        assert_eq!(super::url("/local/path"), "/local/path");
    }

    #[test]
    fn reasons_are_capped() {
        assert_eq!(super::reason("short sig=abc"), "short sig=REDACTED");
        let long = "x".repeat(100_000);
        let r = super::reason(&long);
        assert!(
            r.chars().count() < super::MAX_REASON_CHARS + 60,
            "{}",
            r.len()
        );
        assert!(r.ends_with("(99500 more characters not kept)"), "{r}");
    }

    #[test]
    fn strips_secrets_from_text() {
        let t = super::text("GET https://x/c?sv=1&sig=AbC%2F== failed; AccountKey=xyz;Other=1");
        assert!(!t.contains("AbC") && !t.contains("xyz"), "{t}");
        assert!(t.contains("sig=REDACTED") && t.contains("Other=1"), "{t}");
        // Multi-byte characters where a key would end are not a key (and do not panic).
        assert_eq!(super::text("took 8.2µs, ok µ"), "took 8.2µs, ok µ");
        let d = super::text(r#"SASToken([("sr", "c"), ("sig", "c2ln+x=")])"#);
        assert!(!d.contains("c2ln"), "{d}");
        let b = super::text("Authorization: Bearer eyJ0.x.y\nSharedKey acct:c2ln");
        assert!(!b.contains("eyJ0") && !b.contains("c2ln"), "{b}");
    }
}
