//! Wake-ups from PostgreSQL `NOTIFY`: a dedicated connection LISTENs on one channel and
//! pokes a `Notify`; it reconnects on its own when the database goes away.

use std::sync::Arc;
use std::time::Duration;

use self::tokio_util_shutdown::Shutdown;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::sync::Notify;

pub(crate) mod tokio_util_shutdown {
    /// A shutdown signal shared by background tasks.
    pub type Shutdown = tokio::sync::watch::Receiver<bool>;
}

/// Spawns the listener; `wake` is notified on every notification and after a reconnect.
pub(crate) fn spawn_listener(
    url: String,
    channel: &'static str,
    wake: Arc<Notify>,
    mut shutdown: Shutdown,
) {
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match AsyncPgConnection::establish(&url).await {
                Ok(mut conn) => {
                    if let Err(e) = diesel::sql_query(format!("LISTEN {channel}"))
                        .execute(&mut conn)
                        .await
                    {
                        tracing::warn!(channel, error = %e, "LISTEN failed");
                    } else {
                        // Something may have been written while we were not listening.
                        wake.notify_one();
                        let mut stream = std::pin::pin!(conn.notifications_stream());
                        loop {
                            tokio::select! {
                                item = stream.next() => match item {
                                    Some(Ok(_)) => wake.notify_one(),
                                    Some(Err(e)) => { tracing::warn!(channel, error = %e, "notification stream failed"); break; }
                                    None => break,
                                },
                                _ = shutdown.changed() => return,
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(channel, error = %e, "cannot connect to listen for notifications")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}
