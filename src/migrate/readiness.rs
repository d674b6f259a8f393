//! Readiness: how a warehouse's schema compares with this binary's, and what a job does
//! about it (a fresh warehouse is initialised through the migrations; one behind, ahead or
//! with an unfinished migration is refused, naming the fix).

use super::MigrateError;
use super::history::State;
use super::migrator::Migrator;
use crate::warehouse::{self, Warehouse};

/// How a warehouse's schema compares with this binary's, for jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// No tables and no history: initialise it with the migrations.
    Fresh,
    Current,
    Behind {
        at: u32,
        latest: u32,
    },
    Ahead {
        at: u32,
        latest: u32,
    },
    /// The last run of a migration failed or did not finish.
    Unfinished {
        version: u32,
        state: State,
    },
}

pub async fn readiness(m: &Migrator) -> Result<Readiness, MigrateError> {
    let history = m.history().await?;
    let last = Migrator::last_rows(&history);
    let latest = m.latest();
    if history.is_empty() {
        let mut any = false;
        for def in warehouse::JOB_TABLES {
            any |= m.w.open(def).await?.is_some();
        }
        return Ok(if any {
            Readiness::Behind { at: 0, latest }
        } else {
            Readiness::Fresh
        });
    }
    if let Some((v, r)) = last.iter().find(|(_, r)| r.success != Some(true)) {
        return Ok(Readiness::Unfinished {
            version: *v,
            state: if r.success.is_none() {
                State::Interrupted
            } else {
                State::Failed
            },
        });
    }
    let at = Migrator::schema_version(&last);
    Ok(match at.cmp(&latest) {
        std::cmp::Ordering::Equal => Readiness::Current,
        std::cmp::Ordering::Less => Readiness::Behind { at, latest },
        std::cmp::Ordering::Greater => Readiness::Ahead { at, latest },
    })
}

/// What a job does with a warehouse that is not current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigratePolicy {
    /// Apply pending migrations (`--migrate`) instead of refusing a warehouse that is behind.
    pub apply_pending: bool,
    /// How long to wait for another run's migration lock.
    pub lock_wait: std::time::Duration,
    /// How long a migration lock stays live without renewal.
    pub lock_lease: std::time::Duration,
}

impl Default for MigratePolicy {
    fn default() -> Self {
        Self {
            apply_pending: false,
            lock_wait: super::migrator::DEFAULT_LOCK_WAIT,
            lock_lease: super::lock::DEFAULT_LEASE,
        }
    }
}

/// Brings a fresh warehouse to this executor's schema through the migrations, and refuses
/// one whose schema is behind (unless `policy.apply_pending`) or ahead, naming the command
/// that fixes it.
pub async fn ensure_current(w: &Warehouse, policy: MigratePolicy) -> Result<(), MigrateError> {
    let state = readiness_of(w).await?;
    bring_current(w, policy, state).await.map(|_| ())
}

/// [`readiness`] of the warehouse (whose local directory is made if missing): what
/// [`bring_current`] acts on. Reads only, so a job runs it beside its other first reads.
pub async fn readiness_of(w: &Warehouse) -> Result<Readiness, MigrateError> {
    w.root
        .ensure_dir()
        .map_err(warehouse::WarehouseError::from)?;
    readiness(&Migrator::new(w.clone())).await
}

/// [`ensure_current`] from a `state` read by [`readiness_of`]; true when it migrated.
pub async fn bring_current(
    w: &Warehouse,
    policy: MigratePolicy,
    mut state: Readiness,
) -> Result<bool, MigrateError> {
    let m = Migrator::new(w.clone()).with_policy(policy);
    let fix = || {
        format!(
            "run `nuvyn-executor migrate apply --warehouse {}`, or pass --migrate",
            w.root.display
        )
    };
    // A warehouse another run is migrating right now (concurrent first jobs on a fresh
    // warehouse) is neither behind nor unfinished: wait for that run, then look again.
    if !matches!(state, Readiness::Current | Readiness::Fresh) && m.wait_while_locked().await? {
        state = readiness(&m).await?;
    }
    match state {
        Readiness::Current => Ok(false),
        Readiness::Fresh => {
            tracing::info!(warehouse = %w.root.display, "new warehouse: creating the schema through the migrations");
            m.apply(None, false).await?;
            Ok(true)
        }
        Readiness::Behind { .. } | Readiness::Unfinished { .. } if policy.apply_pending => {
            let r = m.apply(None, false).await?;
            tracing::info!(
                from = r.from_version,
                to = r.to_version,
                "warehouse schema migrated"
            );
            Ok(true)
        }
        Readiness::Behind { at, latest } => Err(MigrateError::Behind {
            at,
            latest,
            fix: fix(),
        }),
        Readiness::Unfinished { version, state } => Err(MigrateError::Unfinished {
            version,
            state,
            fix: fix(),
        }),
        Readiness::Ahead { at, latest } => Err(MigrateError::WarehouseAhead { at, latest }),
    }
}

/// What `schema_validation` reports: each job table's check. With `create`, a fresh
/// warehouse first gets its tables through the migrations, like every other, and the
/// tables made now are reported as created by this run.
pub async fn validate_tables(
    w: &Warehouse,
    create: bool,
    policy: MigratePolicy,
) -> Result<Vec<warehouse::TableCheck>, MigrateError> {
    let mut existed = Vec::new();
    for def in warehouse::JOB_TABLES {
        existed.push(w.open(def).await?.is_some());
    }
    if create {
        w.root
            .ensure_dir()
            .map_err(warehouse::WarehouseError::from)?;
        let m = Migrator::new(w.clone()).with_policy(policy);
        if readiness(&m).await? == Readiness::Fresh {
            m.apply(None, false).await?;
        }
    }
    let mut checks = w.check_all(create).await?;
    for (c, existed) in checks.iter_mut().zip(existed) {
        if !existed && c.version.is_some() {
            c.existed = false;
            c.created = true;
        }
    }
    Ok(checks)
}
