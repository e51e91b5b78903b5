//! Its own test binary: it sends SIGTERM to its own process.

use std::time::Duration;

/// `shutdown_signal()` installs its handlers when called, not when first polled: a SIGTERM that
/// arrives between the call and the server's first poll of the future (a node that has just
/// answered its first request) resolves it, where it used to kill the process.
#[test]
fn a_sigterm_before_the_first_poll_is_a_clean_stop() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stop = shoulders_server::shutdown_signal();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(10), stop)
            .await
            .expect("the SIGTERM sent before the first poll resolves the future");
    });
}
