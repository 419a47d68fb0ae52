//! PostgreSQL LISTEN/NOTIFY: how replicas sharing one database tell each other about changes.
//!
//! [`notify`] sends a payload on a channel through any connection; PostgreSQL delivers it to
//! every session listening on that channel when the sending transaction commits, in commit
//! order. On SQLite there is one process and nobody to tell, so it does nothing.
//!
//! A [`Listener`] owns one dedicated connection outside the pool (a pooled connection would
//! be recycled, and its LISTEN with it) and yields the payloads received on one channel. When
//! that connection drops or stops answering, it reconnects with exponential backoff; whatever
//! was notified while it was disconnected is lost, which the caller must tolerate: every
//! successful reconnection is announced with [`Notification::Reconnected`] so it can catch up.

use std::pin::pin;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{Stream, StreamExt};

use super::pool::establish_postgres;
use super::{DbConn, DbError};

/// How long connecting and subscribing may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the listener waits in silence before checking that its connection is alive.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long that check may take.
const IDLE_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// First delay before reconnecting; doubled after every failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Send `payload` on `channel` to every listening session (PostgreSQL), delivered when the
/// current transaction commits, or right away outside one. PostgreSQL refuses payloads of 8000
/// bytes or more. A no-op on SQLite.
pub async fn notify(conn: &mut DbConn, channel: &str, payload: &str) -> Result<(), DbError> {
    match conn {
        DbConn::Postgres(c) => {
            let c: &mut AsyncPgConnection = c;
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(channel)
                .bind::<Text, _>(payload)
                .execute(c)
                .await?;
            Ok(())
        }
        DbConn::Sqlite(_) => Ok(()),
    }
}

/// What a [`Listener`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// A payload sent on the channel.
    Payload(String),
    /// The connection was lost (or never made) and is listening again: payloads sent in
    /// between are lost.
    Reconnected,
}

/// A dedicated PostgreSQL connection subscribed to one channel.
pub struct Listener {
    url: String,
    channel: String,
    conn: Option<AsyncPgConnection>,
    backoff: Duration,
    /// A reconnection happened that has not been announced yet.
    resumed: bool,
}

impl Listener {
    /// Connect to the PostgreSQL database at `url` and `LISTEN` on `channel` (the name is
    /// taken verbatim, as `pg_notify` takes it). When this first attempt fails the failure is
    /// logged and the stream keeps retrying, so a database that is down at start-up delays
    /// notifications instead of failing the caller.
    pub async fn start(url: &str, channel: &str) -> Listener {
        let mut listener = Listener {
            url: url.to_owned(),
            channel: channel.to_owned(),
            conn: None,
            backoff: INITIAL_BACKOFF,
            resumed: false,
        };
        match listener.connect().await {
            Ok(conn) => listener.conn = Some(conn),
            Err(error) => tracing::warn!(
                %error,
                channel,
                retry_in_ms = listener.backoff.as_millis(),
                "cannot listen for notifications yet; retrying"
            ),
        }
        listener
    }

    /// The payloads received on the channel, in the order PostgreSQL delivers them, and a
    /// [`Notification::Reconnected`] after every reconnection. The stream never ends; drop it to
    /// close the connection.
    pub fn into_stream(self) -> impl Stream<Item = Notification> + Send + 'static {
        futures_util::stream::unfold(self, |mut listener| async move {
            let notification = listener.next_notification().await;
            Some((notification, listener))
        })
    }

    async fn next_notification(&mut self) -> Notification {
        loop {
            if std::mem::take(&mut self.resumed) {
                return Notification::Reconnected;
            }
            let Some(conn) = self.conn.as_mut() else {
                self.reconnect().await;
                continue;
            };
            let received = {
                let mut notifications = pin!(conn.notifications_stream());
                tokio::time::timeout(IDLE_CHECK_INTERVAL, notifications.next()).await
            };
            match received {
                Ok(Some(Ok(notification))) => {
                    self.backoff = INITIAL_BACKOFF;
                    if notification.channel == self.channel {
                        return Notification::Payload(notification.payload);
                    }
                }
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, channel = %self.channel, "lost the notification connection");
                    self.conn = None;
                }
                Ok(None) => {
                    tracing::warn!(channel = %self.channel, "the notification connection closed");
                    self.conn = None;
                }
                Err(_silence) => {
                    match tokio::time::timeout(IDLE_CHECK_TIMEOUT, conn.batch_execute("SELECT 1"))
                        .await
                    {
                        Ok(Ok(())) => self.backoff = INITIAL_BACKOFF,
                        Ok(Err(error)) => {
                            tracing::warn!(%error, channel = %self.channel, "the notification connection failed its check");
                            self.conn = None;
                        }
                        Err(_) => {
                            tracing::warn!(
                                channel = %self.channel,
                                timeout_ms = IDLE_CHECK_TIMEOUT.as_millis(),
                                "the notification connection stopped answering"
                            );
                            self.conn = None;
                        }
                    }
                }
            }
        }
    }

    /// Wait out the backoff, then try once to connect again. The backoff only shrinks back
    /// once a connection has proved healthy (a notification or an idle check), so a database
    /// that accepts connections and drops them at once is not hammered.
    async fn reconnect(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        match self.connect().await {
            Ok(conn) => {
                tracing::info!(channel = %self.channel, "listening for notifications again");
                self.conn = Some(conn);
                self.resumed = true;
            }
            Err(error) => tracing::warn!(
                %error,
                channel = %self.channel,
                retry_in_ms = self.backoff.as_millis(),
                "cannot reconnect the notification connection; retrying"
            ),
        }
    }

    async fn connect(&self) -> Result<AsyncPgConnection, DbError> {
        let attempt = async {
            let mut conn = establish_postgres(&self.url)
                .await
                .map_err(|e| DbError::Connect(e.to_string()))?;
            conn.batch_execute(&format!("LISTEN {}", quote_identifier(&self.channel)))
                .await?;
            Ok(conn)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| {
                DbError::Connect(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
            })?
    }
}

/// A channel name as a quoted SQL identifier: `LISTEN` takes no bind parameters, and quoting
/// keeps the name exactly as `pg_notify` receives it (unquoted names are folded to lower case).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_identifier;

    #[test]
    fn channel_names_are_quoted_verbatim() {
        assert_eq!(
            quote_identifier("switchboard_status"),
            "\"switchboard_status\""
        );
        assert_eq!(quote_identifier("Mixed\"Case"), "\"Mixed\"\"Case\"");
    }
}
