//! `shoulders serve --config FILE`: a TOML file whose keys are the `serve` flags in snake_case.
//!
//! The file is turned into the flags it stands for and parsed by clap with the command line,
//! so a value from the file passes exactly the checks the flag does (ranges, allowed values,
//! conflicts such as `read_only` with `metering`) and `ServeArgs` stays the one definition of
//! what `serve` takes. A flag given on the command line replaces the file's key (for a list
//! such as `upstream`, the whole list). A new `serve` flag needs one line in [`serve_keys!`];
//! a unit test fails until it has it.

use clap::parser::ValueSource;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Largest config file read, in bytes (a complete one is about 2 KiB).
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 * 1024;

/// Why a config file was refused; the message names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Missing, unreadable, not a regular file, or over [`MAX_CONFIG_FILE_BYTES`].
    #[error("config file: {0}")]
    Read(#[from] shoulders_artifacts::files::FileError),
    /// Not TOML, an unknown key, or a value of the wrong type (the message names the key).
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value the flag itself refuses (out of range, not one of the allowed values).
    #[error("config file {path}: key `{key}`: {message}")]
    Value {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    /// Keys that cannot go together, or with the flags on the command line (clap's rules).
    #[error("config file {path}: with its keys as flags, {message} (each key stands for the flag of the same name; a flag on the command line replaces its key)")]
    Combination { path: PathBuf, message: String },
    /// Neither `data_dir` in the file nor `--data-dir` on the command line.
    #[error(
        "config file {path}: no data directory; set `data_dir` in the file or give --data-dir"
    )]
    NoDataDir { path: PathBuf },
}

impl ConfigError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        "E_CONFIG"
    }
}

/// What parsing the command line ended in, when it did not give the arguments.
#[derive(Debug)]
pub enum ParseFailure {
    /// clap's own outcome: a usage error, or `--help`/`--version` (shown by `exit`).
    Clap(clap::Error),
    /// The config file was refused.
    Config(ConfigError),
}

/// A key's value as the flag it stands for: a switch, or the values of one or more `--flag=V`.
#[derive(Debug, PartialEq)]
enum FlagValue {
    Switch(bool),
    Values(Vec<String>),
}

/// How a key's TOML value becomes flag values; `base` is the file's directory.
trait ToFlag {
    fn to_flag(&self, base: &Path) -> FlagValue;
}

impl ToFlag for bool {
    fn to_flag(&self, _: &Path) -> FlagValue {
        FlagValue::Switch(*self)
    }
}

impl ToFlag for u64 {
    fn to_flag(&self, _: &Path) -> FlagValue {
        FlagValue::Values(vec![self.to_string()])
    }
}

impl ToFlag for String {
    fn to_flag(&self, _: &Path) -> FlagValue {
        FlagValue::Values(vec![self.clone()])
    }
}

impl ToFlag for Vec<String> {
    fn to_flag(&self, _: &Path) -> FlagValue {
        FlagValue::Values(self.clone())
    }
}

/// A relative path is taken from the file's directory, so the file means the same whatever
/// directory the server is started from.
impl ToFlag for PathBuf {
    fn to_flag(&self, base: &Path) -> FlagValue {
        FlagValue::Values(vec![base.join(self).to_string_lossy().into_owned()])
    }
}

/// Declares [`ServeFile`]: one `Option` field per key, each named like its flag.
macro_rules! serve_keys {
    ($($key:ident: $ty:ty,)*) => {
        /// The keys of a `serve --config` file; unknown keys are refused.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ServeFile {
            $(pub $key: Option<$ty>,)*
        }

        impl ServeFile {
            /// Every key a file may hold.
            #[cfg(test)]
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];

            /// The keys this file sets, as flag values.
            fn entries(&self, base: &Path) -> Vec<(&'static str, FlagValue)> {
                let mut out = Vec::new();
                $(if let Some(v) = &self.$key {
                    out.push((stringify!($key), v.to_flag(base)));
                })*
                out
            }
        }
    };
}

serve_keys! {
    data_dir: PathBuf,
    listen: String,
    upstream: Vec<String>,
    metering: String,
    max_body_bytes: u64,
    max_content_bytes: u64,
    max_upstream_body_bytes: u64,
    upstream_timeout_ms: u64,
    timeout_ms: u64,
    admission_window_ms: u64,
    rate_limit_per_s: u64,
    rate_limit_loopback: bool,
    attribute_rate_per_s: u64,
    read_only: bool,
    follow_interval_ms: u64,
    index_follow: String,
    header_timeout_ms: u64,
    idle_timeout_ms: u64,
    max_connections: u64,
    quota_records: u64,
    quota_bytes: u64,
    quota_window_ms: u64,
    max_page_bytes: u64,
    log_format: String,
    preload_index: Vec<String>,
    witness_policy: PathBuf,
    keep_outputs: Vec<String>,
}

/// Read and parse a config file (nothing else is checked here: see [`merged_argv`]).
pub fn load(path: &Path) -> Result<ServeFile, ConfigError> {
    let bytes = shoulders_artifacts::files::read_regular_file(path, MAX_CONFIG_FILE_BYTES)?;
    let parse = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let text = String::from_utf8(bytes).map_err(|_| parse("not UTF-8".into()))?;
    toml::from_str(&text).map_err(|e| parse(toml_message(&text, &e)))
}

/// toml's message in one line, naming the key: its unknown-key message names it, and for a
/// wrong value the key is read from the line the error points at (`key = ...` or `[key]`).
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else {
        return message.to_string();
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let source = text.lines().nth(line - 1).unwrap_or_default().trim();
    let key = match source.strip_prefix('[') {
        Some(table) => table.split(']').next(),
        None => source.split_once('=').map(|(k, _)| k),
    }
    .map(str::trim)
    .filter(|k| !k.is_empty() && !k.starts_with('#'));
    match key {
        Some(k) if !message.contains(k) => format!("line {line}: key `{k}`: {message}"),
        _ => format!("line {line}: {message}"),
    }
}

/// Parse the command line, with `serve --config FILE`'s keys standing for the flags the
/// command line does not give.
pub fn parse_cli<P: clap::Parser>(argv: Vec<OsString>) -> Result<P, ParseFailure> {
    let merged = merged_argv(&P::command(), &argv).map_err(ParseFailure::Config)?;
    let Some((path, merged)) = merged else {
        return P::try_parse_from(argv).map_err(ParseFailure::Clap);
    };
    match P::try_parse_from(merged) {
        Ok(p) => Ok(p),
        Err(e) => {
            // The user's own mistake is reported as clap reports it; one that only the file's
            // keys brought in names the file.
            let own = P::command().try_get_matches_from(&argv).err();
            match own {
                Some(own) if own.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
                    Err(ParseFailure::Clap(own))
                }
                _ if is_usage_error(&e) => Err(ParseFailure::Config(ConfigError::Combination {
                    path,
                    message: clap_message(&e),
                })),
                _ => Err(ParseFailure::Clap(e)),
            }
        }
    }
}

fn is_usage_error(e: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    !matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// clap's message on one line, without its `error: ` prefix, usage and tips.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .to_string()
}

/// For `serve --config FILE`: the file and `argv` followed by a `--flag=value` for every key of
/// the file whose flag the command line does not give; `None` for any other command line.
fn merged_argv(
    cmd: &clap::Command,
    argv: &[OsString],
) -> Result<Option<(PathBuf, Vec<OsString>)>, ConfigError> {
    // Lenient: a flag the file is to supply (`--data-dir`, or `--read-only` that another flag
    // requires) may be missing here. A command line clap refuses anyway is left to clap.
    let Ok(matches) = cmd.clone().ignore_errors(true).try_get_matches_from(argv) else {
        return Ok(None);
    };
    let Some(("serve", given)) = matches.subcommand() else {
        return Ok(None);
    };
    let Some(path) = given.get_one::<PathBuf>("config").cloned() else {
        return Ok(None);
    };
    let Some(serve) = cmd.find_subcommand("serve") else {
        return Ok(None);
    };
    let file = load(&path)?;
    let on_command_line =
        |id: &clap::Id| given.value_source(id.as_str()) == Some(ValueSource::CommandLine);
    let base = path.parent().unwrap_or(Path::new("."));
    let mut merged = argv.to_vec();
    let mut has_data_dir = on_command_line(&clap::Id::from("data_dir"));
    for (key, value) in file.entries(base) {
        let flag = key.replace('_', "-");
        // A key without a flag is a mistake in `serve_keys!` that the unit tests catch; it
        // is refused like a bad value rather than ignored.
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
        else {
            return Err(ConfigError::Value {
                path,
                key,
                message: format!("`serve` has no --{flag}"),
            });
        };
        if on_command_line(arg.get_id()) {
            continue;
        }
        has_data_dir |= key == "data_dir";
        match value {
            FlagValue::Switch(true) => merged.push(format!("--{flag}").into()),
            FlagValue::Switch(false) => {}
            FlagValue::Values(values) => {
                for v in values {
                    check_value(serve, &flag, &v).map_err(|message| ConfigError::Value {
                        path: path.clone(),
                        key,
                        message,
                    })?;
                    merged.push(format!("--{flag}={v}").into());
                }
            }
        }
    }
    if !has_data_dir {
        return Err(ConfigError::NoDataDir { path });
    }
    Ok(Some((path, merged)))
}

/// The flag's own value parser on one value from the file, for an error that names the key:
/// `serve` is parsed with just this flag (and a placeholder data directory); only errors about
/// the value count here (a flag this one requires is the whole command line's business).
fn check_value(serve: &clap::Command, flag: &str, value: &str) -> Result<(), String> {
    use clap::error::ErrorKind;
    let words = [
        "serve".to_string(),
        "--data-dir=/".to_string(),
        format!("--{flag}={value}"),
    ];
    match serve.clone().try_get_matches_from(words) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue
                    | ErrorKind::ValueValidation
                    | ErrorKind::TooManyValues
                    | ErrorKind::UnknownArgument
            ) =>
        {
            Err(clap_message(&e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve_cmd::ServeArgs;
    use crate::{Cli, Command};
    use clap::CommandFactory;

    const WRITER_EXAMPLE: &str = include_str!("../../../deploy/shoulders.toml");
    const READER_EXAMPLE: &str = include_str!("../../../deploy/shoulders-reader.toml");

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("shoulders")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn serve_args(args: &[&str]) -> Result<ServeArgs, ParseFailure> {
        match parse_cli::<Cli>(argv(args))?.command {
            Command::Serve(a) => Ok(a),
            _ => panic!("not serve"),
        }
    }

    fn config_error(args: &[&str]) -> ConfigError {
        match serve_args(args) {
            Err(ParseFailure::Config(e)) => e,
            Err(ParseFailure::Clap(e)) => panic!("a clap error, not the file's: {e}"),
            Ok(_) => panic!("accepted: {args:?}"),
        }
    }

    /// Every `serve` flag has its key, and every key its flag, with the same kind of value.
    #[test]
    fn every_serve_flag_has_a_key() {
        let cmd = Cli::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        let flags: Vec<String> = serve
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !["config", "help"].contains(l))
            .map(|l| l.replace('-', "_"))
            .collect();
        let mut keys: Vec<String> = ServeFile::KEYS.iter().map(|k| k.to_string()).collect();
        let mut sorted = flags.clone();
        sorted.sort();
        keys.sort();
        assert_eq!(sorted, keys, "serve_keys! must list every serve flag");
    }

    /// The writer example loads and yields what it says, through clap, as `ServeArgs`.
    #[test]
    fn the_writer_example_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "shoulders.toml", WRITER_EXAMPLE);
        let a = serve_args(&["serve", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(a.data_dir, PathBuf::from("/var/lib/shoulders"));
        assert_eq!(a.listen, "127.0.0.1:8080");
        assert_eq!(
            a.upstreams,
            [(
                "alice/chat".to_string(),
                "http://127.0.0.1:9000/v1".to_string()
            )]
        );
        assert_eq!(a.metering, "on");
        assert!(!a.read_only && !a.rate_limit_loopback);
        assert_eq!(a.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(a.max_content_bytes, 16 * 1024 * 1024);
        assert_eq!(a.max_upstream_body_bytes, 16 * 1024 * 1024);
        assert_eq!((a.upstream_timeout_ms, a.timeout_ms), (120_000, 180_000));
        assert_eq!(a.admission_window_ms, 600_000);
        assert_eq!(a.rate_limit_per_s, 50);
        assert_eq!((a.header_timeout_ms, a.idle_timeout_ms), (10_000, 300_000));
        assert_eq!(a.max_connections, 4096);
        assert_eq!(
            (a.quota_records, a.quota_bytes, a.quota_window_ms),
            (10_000, 256 * 1024 * 1024, 3_600_000)
        );
        assert_eq!(a.max_page_bytes, 4 * 1024 * 1024);
        assert_eq!(a.index_follow, "on");
    }

    /// `index_follow` in a file is `--index-follow`: on by default, off when set so, and only
    /// `on` or `off`.
    #[test]
    fn index_follow_key_and_flag() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            serve_args(&["serve", "--data-dir", "/d"])
                .unwrap()
                .index_follow,
            "on"
        );
        let off = write(
            tmp.path(),
            "off.toml",
            "data_dir = \"/d\"\nindex_follow = \"off\"\n",
        );
        let off = off.to_str().unwrap();
        assert_eq!(
            serve_args(&["serve", "--config", off])
                .unwrap()
                .index_follow,
            "off"
        );
        let a = serve_args(&["serve", "--config", off, "--index-follow", "on"]).unwrap();
        assert_eq!(a.index_follow, "on");
        let bad = write(
            tmp.path(),
            "bad.toml",
            "data_dir = \"/d\"\nindex_follow = \"sometimes\"\n",
        );
        assert!(serve_args(&["serve", "--config", bad.to_str().unwrap()]).is_err());
    }

    /// The writer example shows every key: set, or commented out where it does not apply.
    #[test]
    fn the_writer_example_shows_every_key() {
        for key in ServeFile::KEYS {
            let shown = WRITER_EXAMPLE.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            assert!(shown, "deploy/shoulders.toml does not show `{key}`");
        }
    }

    #[test]
    fn the_reader_example_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "shoulders-reader.toml", READER_EXAMPLE);
        let a = serve_args(&["serve", "--config", path.to_str().unwrap()]).unwrap();
        assert!(a.read_only);
        assert_eq!(a.data_dir, PathBuf::from("/var/lib/shoulders-reader"));
        assert_eq!(a.listen, "127.0.0.1:8081");
        assert_eq!(a.follow_interval_ms, 500);
        assert!(a.upstreams.is_empty());
        assert_eq!(a.max_connections, 4096);
    }

    #[test]
    fn flags_on_the_command_line_replace_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "w.toml", WRITER_EXAMPLE);
        let a = serve_args(&[
            "serve",
            "--listen",
            "0.0.0.0:9999",
            "--config",
            path.to_str().unwrap(),
            "--upstream",
            "bob/x=https://example.org/v1",
            "--max-connections",
            "7",
            "--data-dir",
            "/srv/other",
        ])
        .unwrap();
        assert_eq!(a.listen, "0.0.0.0:9999");
        assert_eq!(a.max_connections, 7);
        assert_eq!(a.data_dir, PathBuf::from("/srv/other"));
        // A list is replaced whole, not merged.
        assert_eq!(
            a.upstreams,
            [("bob/x".to_string(), "https://example.org/v1".to_string())]
        );
        // The keys not given stay.
        assert_eq!((a.metering.as_str(), a.rate_limit_per_s), ("on", 50));
    }

    #[test]
    fn a_switch_on_the_command_line_turns_on_what_the_file_leaves_off() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(
            tmp.path(),
            "r.toml",
            "data_dir = \"/d\"\nread_only = false\n",
        );
        let p = path.to_str().unwrap();
        assert!(!serve_args(&["serve", "--config", p]).unwrap().read_only);
        let a = serve_args(&["serve", "--config", p, "--read-only"]).unwrap();
        assert!(a.read_only);
        // A key the flag requires may come from the file (`follow_interval_ms` needs
        // `read_only`), and a flag may need a key.
        let path = write(
            tmp.path(),
            "r2.toml",
            "data_dir = \"/d\"\nread_only = true\n",
        );
        let p = path.to_str().unwrap();
        let a = serve_args(&["serve", "--config", p, "--follow-interval-ms", "25"]).unwrap();
        assert_eq!((a.read_only, a.follow_interval_ms), (true, 25));
    }

    #[test]
    fn a_relative_data_dir_is_taken_from_the_files_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "c.toml", "data_dir = \"ledger\"\n");
        let a = serve_args(&["serve", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(a.data_dir, tmp.path().join("ledger"));
    }

    /// `witness_policy` is a path like `data_dir`: relative to the file, replaced by the flag.
    #[test]
    fn a_witness_policy_key_is_a_path_and_the_flag_replaces_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(
            tmp.path(),
            "c.toml",
            "data_dir = \"ledger\"\nwitness_policy = \"witnesses.txt\"\n",
        );
        let a = serve_args(&["serve", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(a.witness_policy, Some(tmp.path().join("witnesses.txt")));
        let a = serve_args(&[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--witness-policy",
            "/etc/w.txt",
        ])
        .unwrap();
        assert_eq!(a.witness_policy, Some(PathBuf::from("/etc/w.txt")));
        let a = serve_args(&["serve", "--data-dir", "d"]).unwrap();
        assert_eq!(a.witness_policy, None);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_naming_key_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        for (text, names) in [
            ("data_dir = \"/d\"\ncolour = \"blue\"\n", "colour"),
            // A flag's spelling with dashes is not a key.
            ("data_dir = \"/d\"\nmax-body-bytes = 10\n", "max-body-bytes"),
            (
                "data_dir = \"/d\"\nmax_body_bytes = \"big\"\n",
                "max_body_bytes",
            ),
            ("data_dir = \"/d\"\nread_only = \"yes\"\n", "read_only"),
            ("data_dir = \"/d\"\ntimeout_ms = -5\n", "timeout_ms"),
            ("data_dir = \"/d\"\ntimeout_ms = 1.5\n", "timeout_ms"),
            ("data_dir = \"/d\"\nupstream = \"a=http://x\"\n", "upstream"),
            ("data_dir = \"/d\"\n[listen]\nport = 1\n", "listen"),
        ] {
            let path = write(tmp.path(), "bad.toml", text);
            let e = config_error(&["serve", "--config", path.to_str().unwrap()]);
            assert!(matches!(e, ConfigError::Parse { .. }), "{text}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(names), "{text}: {msg}");
            assert!(msg.contains(path.to_str().unwrap()), "{msg}");
            assert_eq!(e.code(), "E_CONFIG");
        }
    }

    #[test]
    fn values_the_flag_refuses_are_refused_naming_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        for (text, key) in [
            ("max_connections = 0\n", "max_connections"),
            ("metering = \"sometimes\"\n", "metering"),
            ("upstream = [\"no-equals-sign\"]\n", "upstream"),
            ("upstream = [\"a/b=ftp://x\"]\n", "upstream"),
            ("max_content_bytes = 99999999999999\n", "max_content_bytes"),
            ("rate_limit_per_s = 99999999999\n", "rate_limit_per_s"),
        ] {
            let path = write(
                tmp.path(),
                "bad.toml",
                &format!("data_dir = \"/d\"\n{text}"),
            );
            let e = config_error(&["serve", "--config", path.to_str().unwrap()]);
            match &e {
                ConfigError::Value { key: k, .. } => assert_eq!(*k, key, "{e}"),
                other => panic!("{text}: {other:?}"),
            }
            assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
        }
    }

    #[test]
    fn keys_that_cannot_go_together_are_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        for (text, args) in [
            ("read_only = true\nmetering = \"on\"\n", &[][..]),
            ("follow_interval_ms = 10\n", &[][..]),
            ("read_only = true\n", &["--metering", "off"][..]),
        ] {
            let path = write(
                tmp.path(),
                "bad.toml",
                &format!("data_dir = \"/d\"\n{text}"),
            );
            let mut all = vec!["serve", "--config", path.to_str().unwrap()];
            all.extend(args);
            let e = config_error(&all);
            assert!(matches!(e, ConfigError::Combination { .. }), "{e:?}");
            assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
            assert!(e.to_string().contains("--"), "names the flags: {e}");
        }
    }

    #[test]
    fn a_missing_unreadable_or_huge_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.toml");
        let e = config_error(&["serve", "--config", missing.to_str().unwrap()]);
        assert!(matches!(e, ConfigError::Read(_)), "{e:?}");
        assert!(e.to_string().contains("nope.toml"), "{e}");
        let huge = write(
            tmp.path(),
            "huge.toml",
            &"# padding\n".repeat(MAX_CONFIG_FILE_BYTES as usize / 10 + 1),
        );
        let e = config_error(&["serve", "--config", huge.to_str().unwrap()]);
        assert!(e.to_string().contains("limit"), "{e}");
        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, b"listen = \"\xff\"\n").unwrap();
        let e = config_error(&["serve", "--config", bad.to_str().unwrap()]);
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let e = config_error(&["serve", "--config", tmp.path().to_str().unwrap()]);
        assert!(matches!(e, ConfigError::Read(_)), "a directory: {e:?}");
    }

    #[test]
    fn a_data_dir_is_needed_from_one_or_the_other() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "c.toml", "listen = \"127.0.0.1:0\"\n");
        let p = path.to_str().unwrap();
        let e = config_error(&["serve", "--config", p]);
        assert!(matches!(e, ConfigError::NoDataDir { .. }), "{e:?}");
        let a = serve_args(&["serve", "--config", p, "--data-dir", "/x"]).unwrap();
        assert_eq!(
            (a.data_dir, a.listen.as_str()),
            ("/x".into(), "127.0.0.1:0")
        );
        // Without --config, --data-dir is required as before.
        assert!(matches!(
            serve_args(&["serve"]),
            Err(ParseFailure::Clap(e)) if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
        ));
    }

    #[test]
    fn the_users_own_usage_errors_stay_claps() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "c.toml", "data_dir = \"/d\"\n");
        let p = path.to_str().unwrap();
        for args in [
            &["serve", "--config", p, "--no-such-flag"][..],
            &["serve", "--config", p, "--max-connections", "0"][..],
            &["serve", "--config", p, "--help"][..],
        ] {
            assert!(
                matches!(serve_args(args), Err(ParseFailure::Clap(_))),
                "{args:?}"
            );
        }
    }

    /// The systemd units run `serve --config` on the example that goes with them: their
    /// command line, with the example in place of the installed path, parses; the data
    /// directory is the one they may write; the descriptor limit is above the connections.
    #[test]
    fn the_systemd_units_run_serve_with_their_config() {
        let tmp = tempfile::tempdir().unwrap();
        for (unit, example, installed) in [
            (
                include_str!("../../../deploy/shoulders.service"),
                WRITER_EXAMPLE,
                "/etc/shoulders/shoulders.toml",
            ),
            (
                include_str!("../../../deploy/shoulders-reader.service"),
                READER_EXAMPLE,
                "/etc/shoulders/shoulders-reader.toml",
            ),
        ] {
            let setting = |name: &str| -> &str {
                let found: Vec<&str> = unit
                    .lines()
                    .filter_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                    .collect();
                assert_eq!(found.len(), 1, "{name} in {installed}'s unit");
                found[0].trim()
            };
            let exec: Vec<&str> = setting("ExecStart").split_whitespace().collect();
            assert_eq!(
                exec[..4],
                ["/usr/local/bin/shoulders", "serve", "--config", installed]
            );
            let copy = write(tmp.path(), "installed.toml", example);
            let mut args: Vec<&str> = exec[1..].to_vec();
            args[2] = copy.to_str().unwrap();
            let a = serve_args(&args).unwrap_or_else(|e| panic!("{installed}: {e:?}"));
            assert_eq!(a.data_dir, PathBuf::from(setting("ReadWritePaths")));
            let nofile: u64 = setting("LimitNOFILE").parse().unwrap();
            assert!(nofile > a.max_connections + 64, "{installed}");
            assert_eq!(setting("Type"), "simple");
            assert_eq!(setting("Restart"), "on-failure");
            for hardening in ["NoNewPrivileges", "PrivateTmp"] {
                assert_eq!(setting(hardening), "true");
            }
            assert_eq!(setting("ProtectSystem"), "strict");
            assert_eq!(setting("User"), "shoulders");
        }
    }

    #[test]
    fn other_commands_are_untouched() {
        let cli = parse_cli::<Cli>(argv(&["checkpoint", "--data-dir", "/d"])).unwrap();
        assert!(matches!(cli.command, Command::Checkpoint { .. }));
    }
}
