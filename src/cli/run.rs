//! The CLI runner: runs a validated [`Config`] and prints what the library returns. JSON results go to
//! stdout, logs to stderr. Returns the process exit code.

use std::io::Write;

use crate::profile::drift::ChangeKind;

use anyhow::Context;

use crate::cli::{Config, ResultFormat, Settings, Task};
use crate::job::{self, JobReport};
use crate::query;
use crate::warehouse::Warehouse;

pub async fn run(config: Config) -> anyhow::Result<i32> {
    let Config { task, settings } = config;
    crate::storage::configure(settings.storage.clone());
    match task {
        Task::Help => {
            use clap::CommandFactory;
            let mut cmd = crate::cli::Cli::command();
            cmd.print_help().context("printing help")?;
            eprintln!("\nno command given and NUVYN_JOB_PAYLOAD is not set");
            Ok(2)
        }
        Task::Job { options, output } => {
            let report = job::run(*options).await;
            print_report(&report, output)?;
            Ok(report.exit_code())
        }
        Task::SchemaValidation { warehouse, create } => {
            let w = Warehouse::new(warehouse);
            let checks = crate::migrate::validate_tables(&w, create, settings.migrate)
                .await
                .context("checking the warehouse tables")?;
            let ok = checks.iter().all(|c| c.problems.is_empty());
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "warehouse": w.root.display,
                    "valid": ok,
                    "tables": checks,
                }))?
            );
            Ok(if ok { 0 } else { 1 })
        }
        Task::Migrate {
            warehouse,
            action,
            migrations,
        } => migrate(warehouse, action, migrations, &settings).await,
        Task::Notebook { warehouse, action } => notebook(warehouse, action, &settings).await,
        Task::Serve { config, listen } => {
            let state = crate::server::AppState::start(*config)
                .await
                .context("starting the HTTP API")?;
            crate::server::serve(state, listen, shutdown_signal())
                .await
                .context("serving the HTTP API")?;
            Ok(0)
        }
        Task::Ddl { catalog, location } => {
            let ddl = crate::warehouse::registration_ddl(&catalog);
            for line in ddl.lines().filter(|l| !l.starts_with("--")) {
                println!("{}", line.replace("${warehouse}", &location));
            }
            Ok(0)
        }
        Task::Mapping { warehouse, action } => mapping(warehouse, action, &settings).await,
        Task::Maintain { warehouse, options } => {
            let w = Warehouse::new(warehouse);
            let mut done = Vec::new();
            for def in crate::warehouse::WRITTEN_TABLES {
                tracing::info!(table = def.name, "maintaining");
                done.push(
                    w.maintain(def, &options)
                        .await
                        .with_context(|| format!("maintaining {}", def.name))?,
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "warehouse": w.root.display,
                    "dry_run": options.dry_run,
                    "tables": done,
                }))?
            );
            Ok(0)
        }
        Task::Sql {
            warehouse,
            catalog,
            query: q,
            format,
        } => {
            let w = Warehouse::new(warehouse);
            let batches = query::sql(&w, &catalog, &q).await?;
            let text = query::render(&batches, format)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", text.trim_end())?;
            Ok(0)
        }
        Task::Changes {
            warehouse,
            catalog,
            workflow_id,
            source_id,
            since,
            format,
        } => {
            let w = Warehouse::new(warehouse);
            let batches =
                query::workflow_changes(&w, &catalog, &workflow_id, source_id.as_deref(), since)
                    .await?;
            let text = query::render(&batches, format)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", text.trim_end())?;
            Ok(0)
        }
        Task::Query {
            warehouse,
            catalog,
            workflow_id,
            source_id,
        } => {
            let w = Warehouse::new(warehouse);
            let v =
                query::workflow_metadata(&w, &catalog, &workflow_id, source_id.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
    }
}

fn print_report(report: &JobReport, format: ResultFormat) -> anyhow::Result<()> {
    // Written as it is serialised: the result of a lake of 100,000 files is over 100 MB of
    // JSON, which need not be held whole.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        ResultFormat::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        ResultFormat::Table => {
            writeln!(
                out,
                "run {}  workflow {}  status {}  {} ms{}",
                report.run_id,
                report.workflow_id,
                report.status.as_str(),
                report.duration_ms,
                if report.written {
                    "  (written)"
                } else {
                    "  (not written)"
                }
            )?;
            if let Some(e) = &report.error {
                writeln!(out, "error: {e}")?;
            }
            let c = &report.changes;
            if c.breaking + c.warning + c.info > 0 {
                writeln!(
                    out,
                    "changes since the previous run: {} breaking, {} warning, {} info{}",
                    c.breaking,
                    c.warning,
                    c.info,
                    match report.fail_on {
                        Some(f) if report.exit_code() == 4 => format!(" (--fail-on {f}: exit 4)"),
                        _ => String::new(),
                    }
                )?;
            }
            for s in &report.sources {
                writeln!(
                    out,
                    "\nsource {} [{}] {}  files {}  bytes {}  tables {} (failed {})",
                    s.source_path,
                    s.source_id.as_deref().unwrap_or("-"),
                    s.status.as_str(),
                    s.files_found,
                    s.total_size_bytes,
                    s.tables_found,
                    s.tables_failed
                )?;
                if s.tables_carried > 0 {
                    writeln!(
                        out,
                        "  {} unchanged tables not read (profiles carried; --full reads them)",
                        s.tables_carried
                    )?;
                }
                for t in &s.tables {
                    writeln!(
                        out,
                        "  {:<40} {:<8} rows {:>12} cols {:>4} {}{}",
                        t.table_name,
                        t.file_type,
                        t.row_count
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "-".into()),
                        t.column_count,
                        t.quality
                            .as_ref()
                            .map(|q| format!("quality {:>5.1}", q.score))
                            .unwrap_or_default(),
                        t.error_message.as_deref().unwrap_or("")
                    )?;
                    let mut notes = Vec::new();
                    if let Some(r) = &t.carried_from {
                        notes.push(format!("unchanged: profile of run {r}"));
                    }
                    if let Some(p) = &t.partitions {
                        notes.push(format!(
                            "partitions: {} read, {} merged from their sketches, {} gone",
                            p.read, p.reused, p.dropped
                        ));
                    }
                    if !t.candidate_keys.is_empty() {
                        notes.push(format!("keys {}", t.candidate_keys.join(", ")));
                    }
                    if let Some(d) = t.duplicate_rows.filter(|d| *d > 0) {
                        notes.push(format!("~{d} duplicate rows"));
                    }
                    let pii: Vec<&str> = t
                        .columns
                        .iter()
                        .filter(|c| c.pii)
                        .map(|c| c.column_name.as_str())
                        .collect();
                    if !pii.is_empty() {
                        notes.push(format!("personal data in {}", pii.join(", ")));
                    }
                    if let Some(q) = &t.quality
                        && !q.invalid_columns.is_empty()
                    {
                        notes.push(format!(
                            "invalid values in {}",
                            q.invalid_columns.join(", ")
                        ));
                    }
                    if !t.mixed_columns.is_empty() {
                        notes.push(format!(
                            "types differ between files in {}",
                            t.mixed_columns.join(", ")
                        ));
                    }
                    if !notes.is_empty() {
                        writeln!(out, "  {:<40} {}", "", notes.join("; "))?;
                    }
                }
                for k in &s.skipped {
                    writeln!(out, "  skipped {}: {}", k.path, k.reason)?;
                }
                for ch in &s.changes {
                    // A table's own addition or removal names it already.
                    let what = match ch.change {
                        ChangeKind::TableAdded | ChangeKind::TableRemoved => ch.detail.clone(),
                        _ => format!("{}: {}", ch.table_name, ch.detail),
                    };
                    writeln!(
                        out,
                        "  {:<10} {:<20} {what}",
                        format!("[{}]", ch.severity),
                        ch.change.as_str(),
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

async fn migrate(
    warehouse: crate::storage::location::Location,
    action: crate::cli::MigrateAction,
    dir: Option<std::path::PathBuf>,
    settings: &Settings,
) -> anyhow::Result<i32> {
    use crate::cli::MigrateAction as A;
    use crate::migrate::{Migrator, State};
    let mut m = Migrator::new(Warehouse::new(warehouse)).with_policy(settings.migrate);
    if let Some(d) = dir {
        m = m.with_migrations(crate::migrate::read_dir(&d)?);
    }
    let print = |v: serde_json::Value| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(())
    };
    match action {
        A::Status => {
            let s = m.status().await?;
            let unhealthy = s.migrations.iter().any(|x| {
                matches!(
                    x.state,
                    State::Failed | State::Interrupted | State::ChecksumMismatch
                )
            });
            print(serde_json::to_value(&s)?)?;
            Ok(if unhealthy { 1 } else { 0 })
        }
        A::Plan { target } => {
            let plan = m.plan(target).await?;
            print(serde_json::json!({"warehouse": m.w.root.display, "pending": plan}))?;
            Ok(0)
        }
        A::Apply { target, dry_run } => {
            let r = m.apply(target, dry_run).await?;
            print(serde_json::to_value(&r)?)?;
            Ok(0)
        }
        A::Export => {
            print(crate::migrate::export(&m.migrations))?;
            Ok(0)
        }
        A::Validate => {
            let s = m.validate().await?;
            print(serde_json::to_value(&s)?)?;
            Ok(0)
        }
        A::Repair => {
            let r = m.repair().await?;
            print(r)?;
            Ok(0)
        }
    }
}

/// Reads a file given on the command line, naming it when it cannot.
fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

async fn notebook_store(
    warehouse: crate::storage::location::Location,
    settings: &Settings,
) -> anyhow::Result<crate::notebook::Store> {
    let w = Warehouse::new(warehouse);
    crate::migrate::ensure_current(&w, settings.migrate).await?;
    Ok(crate::notebook::Store::new(w).with_max_bytes(settings.notebook_max_bytes))
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn notebook(
    warehouse: crate::storage::location::Location,
    action: crate::cli::NotebookAction,
    settings: &Settings,
) -> anyhow::Result<i32> {
    use crate::cli::NotebookAction as A;
    let store = notebook_store(warehouse, settings).await?;
    match action {
        A::Put {
            workflow_id,
            file,
            created_by,
        } => {
            let text = read_text(&file)?;
            let r = store
                .put(&workflow_id, &text, created_by.as_deref())
                .await
                .with_context(|| format!("storing {}", file.display()))?;
            print_json(&r)?;
        }
        A::Get {
            workflow_id,
            version,
            out,
        } => {
            let (_, text) = store.get(&workflow_id, version).await?;
            match out {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?
                }
                None => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(text.as_bytes())?;
                }
            }
        }
        A::List { workflow_id } => print_json(&store.list(&workflow_id).await?)?,
        A::Diff {
            workflow_id,
            from,
            to,
        } => print_json(&store.diff(&workflow_id, from, to).await?)?,
    }
    Ok(0)
}

async fn mapping(
    warehouse: crate::storage::location::Location,
    action: crate::cli::MappingAction,
    settings: &Settings,
) -> anyhow::Result<i32> {
    use crate::cli::MappingAction as A;
    use crate::notebook::Mapping;
    let store = notebook_store(warehouse, settings).await?;
    match action {
        A::Put {
            workflow_id,
            workflow_version,
            notebook_version,
            file,
            workflow,
        } => {
            let m = Mapping::parse(&read_text(&file)?)?;
            let wf = workflow.as_deref().map(read_text).transpose()?;
            let r = store
                .put_mapping(
                    &workflow_id,
                    workflow_version,
                    notebook_version,
                    m,
                    wf.as_deref(),
                )
                .await?;
            print_json(&r)?;
        }
        A::Get {
            workflow_id,
            workflow_version,
            notebook_version,
            workflow,
        } => {
            let wf = workflow.as_deref().map(read_text).transpose()?;
            let r = store
                .get_mapping(
                    &workflow_id,
                    workflow_version,
                    notebook_version,
                    wf.as_deref(),
                )
                .await?;
            if let Some(v) = r.fallback_from_workflow_version {
                tracing::warn!(
                    "workflow version {workflow_version} has no mapping of its own: using workflow version {v}'s"
                );
            }
            if !r.orphaned_operators.is_empty() {
                tracing::warn!(
                    "operators whose cells were all deleted: {}",
                    r.orphaned_operators.join(", ")
                );
            }
            if let Some(gone) = r.missing_operators.as_ref().filter(|g| !g.is_empty()) {
                tracing::warn!("operators the workflow no longer has: {}", gone.join(", "));
            }
            print_json(&r)?;
        }
        A::Check {
            workflow_id,
            notebook_version,
            file,
            workflow,
        } => {
            let m = Mapping::parse(&read_text(&file)?)?;
            let wf = workflow.as_deref().map(read_text).transpose()?;
            let v = store
                .check_mapping(&workflow_id, notebook_version, &m, wf.as_deref())
                .await?;
            print_json(&serde_json::json!({"valid": true, "notebook_version": v}))?;
        }
    }
    Ok(0)
}

/// Resolves on SIGINT or SIGTERM (how Databricks and container runtimes stop a process).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new requests");
}
