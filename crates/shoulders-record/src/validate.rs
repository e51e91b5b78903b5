//! Field validators shared by all body kinds. Each returns `RecordError::InvalidField` naming
//! the field and the rule, so a person can fix the input.

use crate::{RecordError, MAX_SAFE_INTEGER};

/// Longest display name, in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Longest free-text description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Longest URL or payout address, in bytes.
pub const MAX_URL_BYTES: usize = 512;
/// Longest actor handle, in bytes.
pub const MAX_HANDLE_BYTES: usize = 40;
/// Longest name part of a namespaced id (`<handle>/<name>`), in bytes.
pub const MAX_ID_NAME_BYTES: usize = 96;

type R = Result<(), RecordError>;

fn err(field: &str, reason: impl Into<String>) -> RecordError {
    RecordError::field(field, reason)
}

/// An actor handle: 1–40 bytes of `[a-z0-9_-]`, starting with a letter or digit.
pub fn handle(field: &str, value: &str) -> R {
    let ok = !value.is_empty()
        && value.len() <= MAX_HANDLE_BYTES
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(err(field, format!("must be 1-{MAX_HANDLE_BYTES} characters of a-z, 0-9, '_' or '-', starting with a letter or digit")))
    }
}

/// A namespaced id `<handle>/<name>`; `name` is 1–96 bytes of `[A-Za-z0-9._-]` starting with
/// a letter or digit (Hugging Face style). Returns the namespace.
pub fn namespaced_id<'a>(field: &str, value: &'a str) -> Result<&'a str, RecordError> {
    let Some((ns, name)) = value.split_once('/') else {
        return Err(err(
            field,
            "must be <owner-handle>/<name>, e.g. acme/base-1b",
        ));
    };
    handle(field, ns)
        .map_err(|_| err(field, "namespace before '/' must be a valid actor handle"))?;
    let ok = !name.is_empty()
        && name.len() <= MAX_ID_NAME_BYTES
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(ns)
    } else {
        Err(err(field, format!("name after '/' must be 1-{MAX_ID_NAME_BYTES} characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit")))
    }
}

/// A one-line display string: non-empty, at most `max` bytes, no control characters.
pub fn line(field: &str, value: &str, max: usize) -> R {
    if value.trim().is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(err(field, format!("must be at most {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(err(field, "must not contain control characters"));
    }
    Ok(())
}

/// Free text: at most `max` bytes; newlines and tabs allowed, other control characters not.
pub fn text(field: &str, value: &str, max: usize) -> R {
    if value.len() > max {
        return Err(err(field, format!("must be at most {max} bytes")));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(err(
            field,
            "must not contain control characters other than newline and tab",
        ));
    }
    Ok(())
}

/// An `http(s)://` URL of at most 512 bytes.
pub fn url(field: &str, value: &str) -> R {
    line(field, value, MAX_URL_BYTES)?;
    if !(value.starts_with("https://") || value.starts_with("http://")) || value.contains(' ') {
        return Err(err(
            field,
            "must be an http:// or https:// URL without spaces",
        ));
    }
    Ok(())
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn sha256_ref(field: &str, value: &str) -> R {
    let ok = value.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            "must be sha256: followed by 64 lowercase hex digits",
        ))
    }
}

/// An integer within `[min, max]` (and never above 2^53 − 1).
pub fn int_range(field: &str, value: u64, min: u64, max: u64) -> R {
    debug_assert!(max <= MAX_SAFE_INTEGER);
    if value < min || value > max {
        return Err(err(field, format!("must be between {min} and {max}")));
    }
    Ok(())
}

/// A currency code: 3–12 characters of `A-Z0-9`, starting with a letter (e.g. `USD`, `USDC`).
pub fn currency(field: &str, value: &str) -> R {
    let ok = (3..=12).contains(&value.len())
        && value.as_bytes()[0].is_ascii_uppercase()
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            "must be 3-12 characters of A-Z and 0-9, starting with a letter",
        ))
    }
}

/// Largest money amount a record may carry: 10^18 micro-units (10^12 whole units). Keeping
/// every amount this far below 2^128 lets the fold multiply amounts by weights without overflow.
pub const MAX_AMOUNT_MICROS: u128 = 1_000_000_000_000_000_000;

/// A money amount in micro-units as a canonical decimal string (no sign, no leading zeros), at
/// most [`MAX_AMOUNT_MICROS`].
pub fn amount_micros(field: &str, value: &str) -> Result<u128, RecordError> {
    let canonical = !value.is_empty()
        && value.len() <= 19
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    let parsed = if canonical {
        value
            .parse::<u128>()
            .ok()
            .filter(|a| *a <= MAX_AMOUNT_MICROS)
    } else {
        None
    };
    parsed.ok_or_else(|| {
        err(field, "must be a decimal string of micro-units, e.g. \"1500000\" for 1.5 units (no sign, no leading zeros, at most 10^18)")
    })
}

/// A short tag (use category, territory, dtype): 1–`max` bytes of `[A-Za-z0-9._:-]`.
pub fn tag(field: &str, value: &str, max: usize) -> R {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!("must be 1-{max} characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'"),
        ))
    }
}

/// A relative path inside a model directory: no leading `/`, no `..` or empty segments.
pub fn relative_path(field: &str, value: &str) -> R {
    line(field, value, MAX_URL_BYTES)?;
    if value.starts_with('/')
        || value
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || value.contains('\\')
    {
        return Err(err(
            field,
            "must be a relative path with '/' separators and no '.', '..' or empty segments",
        ));
    }
    Ok(())
}

/// A list of at most `max` entries with no duplicates.
pub fn unique_list<T: Ord>(field: &str, items: &[T], max: usize) -> R {
    if items.len() > max {
        return Err(err(field, format!("must have at most {max} entries")));
    }
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(err(field, "must not contain duplicates"));
    }
    Ok(())
}

/// A client id (idempotency key): 1–128 bytes of printable ASCII without spaces.
/// A ledger origin as a C2SP note names it: 1–255 bytes, no whitespace, control characters or
/// `+` (the separator of a verifier key).
pub fn log_origin(field: &str, value: &str) -> R {
    let ok = !value.is_empty()
        && value.len() <= crate::MAX_LOG_ORIGIN_BYTES
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+');
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "must be the ledger's origin: 1-{} bytes without spaces, control characters or '+'",
                crate::MAX_LOG_ORIGIN_BYTES
            ),
        ))
    }
}

pub fn client_id(field: &str, value: &str) -> R {
    let ok = !value.is_empty()
        && value.len() <= crate::MAX_CLIENT_ID_BYTES
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "must be 1-{} printable ASCII characters without spaces",
                crate::MAX_CLIENT_ID_BYTES
            ),
        ))
    }
}
