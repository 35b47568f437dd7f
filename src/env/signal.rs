//! Shutdown signals. Production stops cleanly on SIGTERM or Ctrl-C; madsim
//! only models Ctrl-C (the harness kills nodes instead).

/// Completes when the process is asked to stop.
#[cfg(not(madsim))]
pub async fn shutdown_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(madsim)]
pub async fn shutdown_requested() {
    let _ = tokio::signal::ctrl_c().await;
}
