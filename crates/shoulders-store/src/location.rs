//! Where a ledger's log lives, chosen at run time: an SQLite file (the embedded default) or a
//! PostgreSQL database.

use crate::{KeyStore, PostgresKeys, PostgresStore, SqliteKeys, SqliteStore, Store, StoreError};
use std::path::PathBuf;
use std::time::Duration;

/// Longest location string accepted, in bytes.
pub const MAX_LOCATION_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` connection URL.
    Postgres(String),
}

impl StoreLocation {
    /// Parse `sqlite:PATH`, `postgres://...` or `postgresql://...`.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        if text.len() > MAX_LOCATION_BYTES {
            return Err(StoreError::BadLocation(format!(
                "database location is {} bytes; the limit is {MAX_LOCATION_BYTES}",
                text.len()
            )));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(StoreError::BadLocation(
                    "`sqlite:` needs a file path, e.g. sqlite:/srv/ledger/ledger.sqlite".into(),
                ));
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<postgres::Config>().map_err(|e| {
                StoreError::BadLocation(format!(
                    "{} is not a valid PostgreSQL URL: {e}",
                    crate::redact_url(text)
                ))
            })?;
            return Ok(StoreLocation::Postgres(text.to_string()));
        }
        Err(StoreError::BadLocation(format!(
            "unknown database location {:?}; use sqlite:PATH or postgres://USER@HOST:PORT/DB",
            crate::redact_url(text)
        )))
    }

    /// The location for messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreLocation::Postgres(url) => crate::redact_url(url),
        }
    }

    /// The location as `parse` reads it back (with any password: keep it private).
    pub fn to_config_string(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreLocation::Postgres(url) => url.clone(),
        }
    }

    /// Create (or open) the store for writing; the database may be new and empty.
    pub fn create(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(path) => Box::new(SqliteStore::create(path)?),
            StoreLocation::Postgres(url) => Box::new(PostgresStore::create(url)?),
        })
    }

    /// Open an existing store for writing. PostgreSQL also takes the database-wide writer lock,
    /// trying for up to `lock_wait` (see [`PostgresStore::open_waiting`]).
    pub fn open_writer(&self, lock_wait: Duration) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(path) => Box::new(SqliteStore::open(path)?),
            StoreLocation::Postgres(url) => Box::new(PostgresStore::open_waiting(url, lock_wait)?),
        })
    }

    /// Open an existing store for reading; works while a writer runs.
    pub fn open_read_only(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(path) => Box::new(SqliteStore::open_read_only(path)?),
            StoreLocation::Postgres(url) => Box::new(PostgresStore::open_read_only(url)?),
        })
    }

    /// Open the API key tables of an existing store, on a connection of their own: no writer
    /// lock is taken, so this works while a writer (a running server) has the log open.
    pub fn open_keys(&self) -> Result<Box<dyn KeyStore>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(path) => Box::new(SqliteKeys::open(path)?),
            StoreLocation::Postgres(url) => Box::new(PostgresKeys::open(url)?),
        })
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::StoreLocation;

    #[test]
    fn parses_both_backends_and_refuses_others() {
        assert_eq!(
            StoreLocation::parse("sqlite:/a/b.sqlite").unwrap(),
            StoreLocation::Sqlite("/a/b.sqlite".into())
        );
        assert!(matches!(
            StoreLocation::parse("postgres://u@localhost:5432/db").unwrap(),
            StoreLocation::Postgres(_)
        ));
        for bad in [
            "mysql://x",
            "sqlite:",
            "/just/a/path",
            "postgres://u@h:notaport/db",
        ] {
            assert_eq!(
                StoreLocation::parse(bad).unwrap_err().code(),
                "E_DATABASE_URL",
                "{bad}"
            );
        }
    }
}
