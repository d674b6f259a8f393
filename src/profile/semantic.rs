//! Semantic types of text values: what a string is (a number, a date, an e-mail address, a
//! card number...), decided by hand-written checks (no regex engine: each check stops at the
//! first byte that rules it out), and the types that are personal data. Column-level
//! decisions (which type a column is, whether it is PII) are the sketch's, from a sample.

use std::net::IpAddr;

/// What a text value is. The order is the order of the checks: the first that matches wins
/// (a Luhn-valid 16-digit string is a card number before it is an integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Semantic {
    Boolean,
    CardNumber,
    Integer,
    Decimal,
    Date,
    Timestamp,
    Uuid,
    Email,
    Url,
    IpAddress,
    NationalId,
    Iban,
    Phone,
    Json,
    /// None of the above.
    Text,
}

impl Semantic {
    pub const ALL: [Semantic; 15] = [
        Self::Boolean,
        Self::CardNumber,
        Self::Integer,
        Self::Decimal,
        Self::Date,
        Self::Timestamp,
        Self::Uuid,
        Self::Email,
        Self::Url,
        Self::IpAddress,
        Self::NationalId,
        Self::Iban,
        Self::Phone,
        Self::Json,
        Self::Text,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::CardNumber => "card_number",
            Self::Integer => "integer",
            Self::Decimal => "decimal",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::Uuid => "uuid",
            Self::Email => "email",
            Self::Url => "url",
            Self::IpAddress => "ip_address",
            Self::NationalId => "national_id",
            Self::Iban => "iban",
            Self::Phone => "phone",
            Self::Json => "json",
            Self::Text => "text",
        }
    }

    /// Personal data: values that identify or reach a person.
    pub fn is_personal(self) -> bool {
        matches!(
            self,
            Self::Email
                | Self::Phone
                | Self::CardNumber
                | Self::Iban
                | Self::NationalId
                | Self::IpAddress
        )
    }
}

/// The semantic type of one value; `None` for a blank value (empty or whitespace only).
pub fn classify(raw: &str) -> Option<Semantic> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    Some(if is_boolean(s) {
        Semantic::Boolean
    } else if is_card_number(b) {
        Semantic::CardNumber
    } else if is_integer(b) {
        Semantic::Integer
    } else if is_decimal(b) {
        Semantic::Decimal
    } else if is_date(s) {
        Semantic::Date
    } else if is_timestamp(s) {
        Semantic::Timestamp
    } else if is_uuid(b) {
        Semantic::Uuid
    } else if is_email(s) {
        Semantic::Email
    } else if is_url(s) {
        Semantic::Url
    } else if s.parse::<IpAddr>().is_ok() {
        Semantic::IpAddress
    } else if is_us_ssn(b) {
        Semantic::NationalId
    } else if is_iban(b) {
        Semantic::Iban
    } else if is_phone(b) {
        Semantic::Phone
    } else if is_json(s) {
        Semantic::Json
    } else {
        Semantic::Text
    })
}

fn is_boolean(s: &str) -> bool {
    ["true", "false", "yes", "no", "t", "f", "y", "n"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w))
}

fn digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

fn is_integer(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").or(b.strip_prefix(b"+")).unwrap_or(b);
    digits(b)
}

fn is_decimal(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").or(b.strip_prefix(b"+")).unwrap_or(b);
    let (mantissa, exp) = match b.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    if let Some(e) = exp
        && !is_integer(e)
    {
        return false;
    }
    let mut parts = mantissa.splitn(2, |&c| c == b'.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next().unwrap_or_default();
    let ok = |p: &[u8]| p.iter().all(u8::is_ascii_digit);
    ok(int)
        && ok(frac)
        && !(int.is_empty() && frac.is_empty())
        && (exp.is_some() || mantissa.contains(&b'.'))
}

const DATE_FORMATS: [&str; 6] = [
    "%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d",
];

fn is_date(s: &str) -> bool {
    // A bare 8-digit number is an integer (checked first), so %Y%m%d never sees one here.
    (8..=10).contains(&s.len())
        && DATE_FORMATS
            .iter()
            .any(|f| chrono::NaiveDate::parse_from_str(s, f).is_ok())
}

fn is_timestamp(s: &str) -> bool {
    if !(16..=35).contains(&s.len()) {
        return false;
    }
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::DateTime::parse_from_rfc2822(s).is_ok()
        || [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
            "%d/%m/%Y %H:%M:%S",
            "%m/%d/%Y %H:%M:%S",
        ]
        .iter()
        .any(|f| chrono::NaiveDateTime::parse_from_str(s, f).is_ok())
        || ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"]
            .iter()
            .any(|f| chrono::DateTime::parse_from_str(s, f).is_ok())
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&c))
        && !local.starts_with('.')
        && !local.ends_with('.');
    local_ok && is_domain(domain)
}

fn is_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()))
}

fn is_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http"
            | "https"
            | "ftp"
            | "ftps"
            | "s3"
            | "s3a"
            | "gs"
            | "abfs"
            | "abfss"
            | "wasbs"
            | "dbfs"
    );
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host);
    scheme_ok && !host.is_empty() && !s.contains(char::is_whitespace)
}

/// US social security number, `ddd-dd-dddd`, with the ranges the SSA never issues excluded.
fn is_us_ssn(b: &[u8]) -> bool {
    if b.len() != 11 || b[3] != b'-' || b[6] != b'-' {
        return false;
    }
    let (area, group, serial) = (&b[0..3], &b[4..6], &b[7..11]);
    digits(area)
        && digits(group)
        && digits(serial)
        && area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && group != b"00"
        && serial != b"0000"
}

/// An IBAN (spaces allowed) whose ISO 7064 mod-97 check digits are right.
fn is_iban(b: &[u8]) -> bool {
    let compact: Vec<u8> = b.iter().copied().filter(|c| *c != b' ').collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact[4..].iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let mut rem: u32 = 0;
    for c in compact[4..].iter().chain(&compact[..4]) {
        let v = if c.is_ascii_digit() {
            (c - b'0') as u32
        } else {
            (c.to_ascii_uppercase() - b'A') as u32 + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// 13 to 19 digits (spaces or dashes between groups allowed) passing the Luhn check, with a
/// card network's leading digit (2-6).
fn is_card_number(b: &[u8]) -> bool {
    let mut sum = 0u32;
    let digits: Vec<u32> = b
        .iter()
        .filter(|c| !matches!(c, b' ' | b'-'))
        .map(|c| {
            if c.is_ascii_digit() {
                (c - b'0') as u32
            } else {
                99
            }
        })
        .collect();
    if digits.iter().any(|d| *d > 9)
        || !(13..=19).contains(&digits.len())
        || !(2..=6).contains(&digits[0])
        || b.first().is_some_and(|c| !c.is_ascii_digit())
    {
        return false;
    }
    for (n, d) in digits.iter().rev().enumerate() {
        let mut d = *d;
        if n % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// A phone number: up to 15 digits (E.164), at least 7 after a leading `+` and 9 without
/// one, with the separators people write (spaces, dashes, dots, parentheses); a bare run
/// of digits is an integer.
fn is_phone(b: &[u8]) -> bool {
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let allowed = b
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b' ' | b'.' | b'(' | b')'));
    let plus_ok = b.iter().skip(1).all(|c| *c != b'+');
    allowed
        && plus_ok
        && (if b[0] == b'+' { 7 } else { 9 }..=15).contains(&digits)
        && b.iter().any(|c| !c.is_ascii_digit())
        && b.last().is_some_and(u8::is_ascii_digit)
}

fn is_json(s: &str) -> bool {
    (s.starts_with('{') && s.ends_with('}') || s.starts_with('[') && s.ends_with(']'))
        && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

/// A personal value shown with its shape only: the first and last characters stay, every
/// other letter or digit becomes `*` (separators such as `@ . - space` stay); values of
/// four characters or fewer are starred whole.
pub fn mask(s: &str) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_alphanumeric() && (n <= 4 || (i != 0 && i + 1 != n)) {
                '*'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_get_their_types() {
        let cases = [
            ("true", Semantic::Boolean),
            ("N", Semantic::Boolean),
            ("4111 1111 1111 1111", Semantic::CardNumber),
            ("4111111111111111", Semantic::CardNumber),
            ("4111111111111112", Semantic::Integer),
            ("-42", Semantic::Integer),
            ("3.25", Semantic::Decimal),
            ("-1e10", Semantic::Decimal),
            ("2024-02-29", Semantic::Date),
            ("31/12/2023", Semantic::Date),
            ("2024-02-29T10:00:00Z", Semantic::Timestamp),
            ("2024-02-29 10:00:00.123", Semantic::Timestamp),
            ("67e55044-10b1-426f-9247-bb680e5fe0c8", Semantic::Uuid),
            ("ann.lee+x@example.co.uk", Semantic::Email),
            ("https://example.com/a?b=1", Semantic::Url),
            ("abfss://c@acct.dfs.core.windows.net/p", Semantic::Url),
            ("192.168.0.1", Semantic::IpAddress),
            ("2001:db8::1", Semantic::IpAddress),
            ("123-45-6789", Semantic::NationalId),
            ("GB82 WEST 1234 5698 7654 32", Semantic::Iban),
            ("DE89370400440532013000", Semantic::Iban),
            ("+44 20 7946 0958", Semantic::Phone),
            ("(555) 123-4567", Semantic::Phone),
            (r#"{"a": [1, 2]}"#, Semantic::Json),
            ("hello world", Semantic::Text),
            ("2024-02-30", Semantic::Text),
            ("GB82 WEST 1234 5698 7654 33", Semantic::Text),
            ("not@an@email", Semantic::Text),
            ("666-45-6789", Semantic::Phone),
        ];
        for (v, want) in cases {
            assert_eq!(classify(v), Some(want), "{v}");
        }
        assert_eq!(classify("  "), None);
        assert_eq!(classify(""), None);
    }

    #[test]
    fn masks_keep_the_shape_only() {
        assert_eq!(mask("ann.lee@example.com"), "a**.***@*******.**m");
        assert_eq!(mask("4111 1111 1111 1111"), "4*** **** **** ***1");
        assert_eq!(mask("ab1"), "***");
        assert!(Semantic::Email.is_personal() && !Semantic::Date.is_personal());
    }
}
