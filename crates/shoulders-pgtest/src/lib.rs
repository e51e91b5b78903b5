//! Test and benchmark support for the PostgreSQL store: one fresh database per caller on a
//! real server, never a skip.
//!
//! If `SHOULDERS_TEST_PG_URL` is set (CI sets it to the server `.ci/run` started), databases
//! are created on that server. Otherwise the first caller starts a throwaway server from the
//! installed binaries (`initdb` + `pg_ctl` into a temporary directory on a free local port; as
//! the unprivileged `nobody` user when running as root, because PostgreSQL refuses root), and a
//! small watcher process stops it and deletes its files when this process exits. If neither
//! works the caller panics with a message that says what to install or set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Environment variable naming a server (any database on it) where the caller may create
/// databases.
pub const URL_ENV: &str = "SHOULDERS_TEST_PG_URL";
/// Environment variable naming the directory holding `initdb` and `pg_ctl`.
pub const BIN_ENV: &str = "SHOULDERS_PG_BIN";

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// The URL of a new, empty database on a real PostgreSQL server. Panics with an actionable
/// message when no server can be reached or started.
pub fn fresh_database_url() -> String {
    let admin = SERVER
        .get_or_init(|| match std::env::var(URL_ENV) {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => PgServer::start().map(|s| {
                let url = s.admin_url();
                s.stop_when_process_exits();
                url
            }),
        })
        .as_ref()
        .unwrap_or_else(|e| {
            panic!("no PostgreSQL server for the tests: {e}. Set {URL_ENV}=postgres://USER@HOST:PORT/DB, or install PostgreSQL (initdb, pg_ctl) on PATH or in {BIN_ENV}")
        });
    create_database(admin).unwrap_or_else(|e| panic!("cannot create a test database: {e}"))
}

/// Create a uniquely named database on the server of `admin_url`; returns its URL.
pub fn create_database(admin_url: &str) -> Result<String, String> {
    let name = format!(
        "shoulders_t{}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst),
        nanos() % 1_000_000
    );
    let mut client = postgres::Client::connect(admin_url, postgres::NoTls)
        .map_err(|e| format!("cannot connect to {admin_url}: {e}"))?;
    // An identifier cannot be a bind parameter; `name` is generated here from [a-z0-9_] only.
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
    Ok(with_database(admin_url, &name))
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = head[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(head.len());
    format!("{}/{name}{query}", &head[..authority_end])
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A PostgreSQL server this process started in a temporary directory.
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_nobody: bool,
}

impl PgServer {
    /// `initdb` a new cluster in a temporary directory and start it on a free local port.
    pub fn start() -> Result<PgServer, String> {
        let bin = find_bin()?;
        let as_nobody = running_as_root();
        let dir =
            std::env::temp_dir().join(format!("shoulders-pg-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = free_port()?;
        let server = PgServer {
            bin,
            dir,
            port,
            as_nobody,
        };
        if as_nobody {
            run(Command::new("chown").args(["nobody"]).arg(&server.dir))?;
        }
        let data = server.data_dir();
        run(server
            .command("initdb")
            .args([
                "-U",
                "shoulders",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data))?;
        server.pg_ctl_start()?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options]))
    }

    /// Stop the server like a power cut (`pg_ctl stop -m immediate`: no shutdown checkpoint),
    /// then start it again; committed transactions must survive through WAL recovery.
    pub fn crash_and_restart(&self) -> Result<(), String> {
        run(self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data_dir()))?;
        self.pg_ctl_start()
    }

    /// A URL for the `postgres` database, where databases can be created.
    pub fn admin_url(&self) -> String {
        format!("postgres://shoulders@127.0.0.1:{}/postgres", self.port)
    }

    /// Leave a watcher process behind that stops the server and deletes its directory once
    /// this process has exited (statics have no destructor, and a test binary just exits).
    pub fn stop_when_process_exits(self) {
        let stop = self.stop_script();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}",
            pid = std::process::id()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        std::mem::forget(self);
    }

    fn stop_script(&self) -> String {
        let runner = if self.as_nobody {
            "runuser -u nobody -- "
        } else {
            ""
        };
        format!(
            "{runner}'{}' stop -m immediate -D '{}' >/dev/null 2>&1; rm -rf '{}'",
            self.bin.join("pg_ctl").display(),
            self.data_dir().display(),
            self.dir.display()
        )
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The tools print to the caller's stdout otherwise; keep test output readable.
        cmd.stdin(Stdio::null());
        cmd
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_script()])
            .stdin(Stdio::null())
            .status();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} {:?} failed: {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The directory holding `initdb` and `pg_ctl`: `SHOULDERS_PG_BIN`, then `PATH`, then the
/// Debian package's `/usr/lib/postgresql/<version>/bin` (newest first).
fn find_bin() -> Result<PathBuf, String> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os(BIN_ENV) {
        let d = PathBuf::from(d);
        return if has_tools(&d) {
            Ok(d)
        } else {
            Err(format!("{BIN_ENV}={} has no initdb/pg_ctl", d.display()))
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|d| has_tools(d))
        .ok_or_else(|| "initdb and pg_ctl are not installed".to_string())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
    }
}
