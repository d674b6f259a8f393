//! The migration lock: an object beside the tables, created with a conditional write, that
//! names its holder and carries a lease the holder renews while it runs. A lock whose lease
//! ran out belongs to a run that died: the next `apply` takes it over and jobs stop waiting
//! for it; `repair` removes it. A lock that is being renewed is never taken or removed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::MigrateError;
use crate::storage::Location;

/// How long a lock stays live without renewal unless told otherwise
/// (`NUVYN_MIGRATE_LOCK_LEASE_SECS`); the holder renews it every third of that.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// What a lock object holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LockBody {
    pub owner: String,
    /// Tells the holder its own lock from a later holder's.
    #[serde(default)]
    pub token: String,
    pub since: String,
    /// Until when the lease runs; absent in locks of executors before leases (their lease
    /// is counted from `since`).
    #[serde(default)]
    pub expires: Option<String>,
}

impl LockBody {
    fn new(owner: &str, token: &str, lease: Duration) -> Self {
        let now = Utc::now();
        Self {
            owner: owner.to_string(),
            token: token.to_string(),
            since: now.to_rfc3339(),
            expires: Some(lease_end(now, lease).to_rfc3339()),
        }
    }

    /// When the lease runs out; an unreadable time counts as run out.
    pub fn expires_at(&self, lease: Duration) -> DateTime<Utc> {
        let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc());
        match &self.expires {
            Some(e) => parse(e),
            None => parse(&self.since).map(|s| lease_end(s, lease)),
        }
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn bytes(&self) -> PutPayload {
        PutPayload::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

fn lease_end(from: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// What is at the lock's place now.
#[derive(Debug)]
pub enum Seen {
    Free,
    /// Held, and its lease has not run out.
    Live(LockBody),
    /// Its lease ran out: the holder died (or stalled for longer than the lease).
    Dead(LockBody, UpdateVersion),
}

/// The lock of one warehouse.
#[derive(Debug, Clone)]
pub struct MigrationLock {
    root: Location,
    store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub display: String,
    pub lease: Duration,
}

/// A lock this process holds; its lease is renewed until [`Held::release`].
pub struct Held {
    lock: MigrationLock,
    token: String,
    renewing: tokio::task::JoinHandle<()>,
}

impl MigrationLock {
    pub fn new(root: &Location, path: Path, lease: Duration) -> Self {
        Self {
            root: root.clone(),
            store: root.store.clone(),
            display: root.display_of(&path),
            path,
            lease,
        }
    }

    fn locked(&self, b: &LockBody) -> MigrateError {
        MigrateError::Locked {
            lock: self.display.clone(),
            since: b.since.clone(),
            owner: b.owner.clone(),
            expires: b.expires_at(self.lease).to_rfc3339(),
        }
    }

    pub async fn look(&self) -> Result<Seen, MigrateError> {
        let got = match self.store.get(&self.path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(Seen::Free),
            Err(e) => return Err(MigrateError::Other(self.root.explain(&e))),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = match got.bytes().await {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Ok(Seen::Free),
            Err(e) => return Err(MigrateError::Other(self.root.explain(&e))),
        };
        // Unreadable content (a torn write of an old executor) counts as a dead lock.
        let body: LockBody = serde_json::from_slice(&bytes).unwrap_or(LockBody {
            owner: "?".into(),
            token: String::new(),
            since: "?".into(),
            expires: None,
        });
        Ok(if body.expires_at(self.lease) > Utc::now() {
            Seen::Live(body)
        } else {
            Seen::Dead(body, version)
        })
    }

    /// Takes the lock, waiting up to `wait` for a live holder; a dead holder's lock is
    /// taken over at once.
    pub async fn acquire(&self, owner: &str, wait: Duration) -> Result<Held, MigrateError> {
        let token = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let mut told = false;
        loop {
            let body = LockBody::new(owner, &token, self.lease);
            let created = self
                .store
                .put_opts(&self.path, body.bytes(), PutOptions::from(PutMode::Create))
                .await;
            match created {
                Ok(_) => return Ok(self.held(owner, token)),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(MigrateError::Other(self.root.explain(&e))),
            }
            match self.look().await? {
                Seen::Free => continue,
                Seen::Dead(dead, version) => {
                    tracing::warn!(
                        lock = %self.display,
                        "taking over the migration lock of {} (since {}): its lease ran out at {}",
                        dead.owner,
                        dead.since,
                        dead.expires_at(self.lease).to_rfc3339()
                    );
                    let replaced = self
                        .store
                        .put_opts(
                            &self.path,
                            body.bytes(),
                            PutOptions::from(PutMode::Update(version)),
                        )
                        .await;
                    match replaced {
                        Ok(_) => return Ok(self.held(owner, token)),
                        // Another run took it over first: look again.
                        Err(object_store::Error::Precondition { .. }) => continue,
                        // Stores without conditional updates (local disk): remove it and
                        // race for the create like everyone else.
                        Err(object_store::Error::NotImplemented { .. }) => {
                            if self.still(&dead).await? {
                                self.remove().await?;
                            }
                        }
                        Err(e) => return Err(MigrateError::Other(self.root.explain(&e))),
                    }
                }
                Seen::Live(live) => {
                    if started.elapsed() >= wait {
                        return Err(self.locked(&live));
                    }
                    if !told {
                        tracing::info!(
                            "waiting for another `migrate apply` ({}) to finish",
                            live.owner
                        );
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Whether the lock object still holds `body` (the same holder's same lease).
    async fn still(&self, body: &LockBody) -> Result<bool, MigrateError> {
        Ok(match self.look().await? {
            Seen::Free => false,
            Seen::Live(b) | Seen::Dead(b, _) => b == *body,
        })
    }

    async fn remove(&self) -> Result<(), MigrateError> {
        match self.store.delete(&self.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(MigrateError::Other(self.root.explain(&e))),
        }
    }

    fn held(&self, owner: &str, token: String) -> Held {
        let (lock, owner, mine) = (self.clone(), owner.to_string(), token.clone());
        // Renewed every third of the lease, so two missed renewals still leave it live.
        let renewing = tokio::spawn(async move {
            let since = Utc::now().to_rfc3339();
            loop {
                tokio::time::sleep(lock.lease / 3).await;
                match lock.look().await {
                    Ok(Seen::Live(b) | Seen::Dead(b, _)) if b.token == mine => {}
                    _ => {
                        tracing::error!(lock = %lock.display, "the migration lock was taken from this run (it stalled for longer than its lease)");
                        return;
                    }
                }
                let body = LockBody {
                    since: since.clone(),
                    ..LockBody::new(&owner, &mine, lock.lease)
                };
                if let Err(e) = lock.store.put(&lock.path, body.bytes()).await {
                    tracing::warn!(lock = %lock.display, "renewing the migration lock failed: {e}");
                }
            }
        });
        Held {
            lock: self.clone(),
            token,
            renewing,
        }
    }

    /// Waits (up to `wait`) while a live run holds the lock; true when there was one to wait
    /// for. A dead run's lock does not hold anyone up.
    pub async fn wait_while_held(&self, wait: Duration) -> Result<bool, MigrateError> {
        let started = Instant::now();
        let mut waited = false;
        loop {
            match self.look().await? {
                Seen::Free | Seen::Dead(..) => return Ok(waited),
                Seen::Live(b) if started.elapsed() >= wait => return Err(self.locked(&b)),
                Seen::Live(b) => {
                    if !waited {
                        tracing::info!(
                            "another run ({}) is migrating the warehouse: waiting for it",
                            b.owner
                        );
                    }
                    waited = true;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Removes a dead run's lock. A lock that looks live is watched for one lease: its
    /// holder, if running, renews it three times in that span, and then it stays; if it is
    /// not renewed, its holder is gone. `true`: removed.
    pub async fn remove_dead(&self) -> Result<bool, MigrateError> {
        let first = match self.look().await? {
            Seen::Free => return Ok(false),
            Seen::Dead(..) => return self.remove().await.map(|()| true),
            Seen::Live(b) => b,
        };
        tracing::info!(
            "the migration lock of {} looks live: watching for {:?} whether it is renewed",
            first.owner,
            self.lease
        );
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match self.look().await? {
                Seen::Free => return Ok(false),
                Seen::Live(b) | Seen::Dead(b, _) if b == first => {
                    if started.elapsed() >= self.lease {
                        // Still the same lease after one lease: nobody renews it.
                        return if self.still(&first).await? {
                            self.remove().await.map(|()| true)
                        } else {
                            Ok(false)
                        };
                    }
                }
                Seen::Live(b) if b.token == first.token => {
                    return Err(MigrateError::LockLive {
                        lock: self.display.clone(),
                        owner: b.owner.clone(),
                        expires: b.expires_at(self.lease).to_rfc3339(),
                    });
                }
                // Taken over by another run meanwhile.
                Seen::Live(_) | Seen::Dead(..) => return Ok(false),
            }
        }
    }
}

impl Held {
    /// What a killed holder leaves: the lock, no longer renewed.
    #[cfg(test)]
    pub fn crash(self) {
        self.renewing.abort();
    }

    /// Stops renewing and removes the lock, if it is still this run's.
    pub async fn release(self) {
        self.renewing.abort();
        match self.lock.look().await {
            Ok(Seen::Live(b) | Seen::Dead(b, _)) if b.token == self.token => {
                if let Err(e) = self.lock.remove().await {
                    tracing::warn!("could not remove the migration lock: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not read the migration lock: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_in(dir: &std::path::Path, lease: Duration) -> MigrationLock {
        let root = crate::storage::location::parse(&dir.display().to_string()).unwrap();
        root.ensure_dir().unwrap();
        MigrationLock::new(&root, root.prefix.clone().join("_migrate.lock"), lease)
    }

    /// A renewed lock is neither taken nor removed; once its holder stops renewing (killed),
    /// the next run takes it over after one lease, without waiting out its whole wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_lock_is_kept_and_a_dead_one_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        // Long enough that a loaded machine still renews in time (every 500 ms).
        let lease = Duration::from_millis(1_500);
        let lock = lock_in(d.path(), lease);
        let a = lock.acquire("run-a", Duration::ZERO).await.unwrap();
        // Across several renewals: still held by a.
        match lock.acquire("run-b", Duration::from_secs(3)).await {
            Err(MigrateError::Locked { owner, .. }) => assert_eq!(owner, "run-a"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        match lock.remove_dead().await {
            Err(e @ MigrateError::LockLive { .. }) => {
                assert!(e.to_string().contains("run-a"), "{e}")
            }
            other => panic!("a live lock was not kept: {other:?}"),
        }
        a.crash();
        let started = Instant::now();
        let b = lock
            .acquire("run-b", Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        match lock.look().await.unwrap() {
            Seen::Live(body) => assert_eq!(body.owner, "run-b"),
            other => panic!("{other:?}"),
        }
        b.release().await;
        assert!(matches!(lock.look().await.unwrap(), Seen::Free));

        // A lock an executor before leases left: its lease counts from `since`.
        let old = serde_json::json!({"owner": "old", "since": "2026-01-01T00:00:00Z"});
        std::fs::write(d.path().join("_migrate.lock"), old.to_string()).unwrap();
        assert!(matches!(lock.look().await.unwrap(), Seen::Dead(..)));
        assert!(lock.remove_dead().await.unwrap());
        assert!(matches!(lock.look().await.unwrap(), Seen::Free));

        // A lock that claims a long lease but is never renewed is removed after one lease.
        let far = serde_json::json!({"owner": "stuck", "token": "t", "since": Utc::now().to_rfc3339(),
            "expires": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()});
        std::fs::write(d.path().join("_migrate.lock"), far.to_string()).unwrap();
        assert!(matches!(lock.look().await.unwrap(), Seen::Live(_)));
        assert!(lock.remove_dead().await.unwrap());
    }
}
