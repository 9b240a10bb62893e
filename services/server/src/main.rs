//! `observatory`: the treatment access observatory's command line.

use anyhow::Context;
use std::{collections::HashMap, path::PathBuf};

use clap::{Parser, Subcommand};
use observatory_server::{Application, Config, open_store, shutdown_signal, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "observatory",
    version,
    about = "Treatment access observatory for rare-disease networks"
)]
struct Cli {
    /// TOML configuration file (keys of the README's configuration table).
    #[arg(long, global = true, env = "OBSERVATORY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Migrate the database, load reference data and serve gRPC until ctrl-c or SIGTERM.
    Serve {
        /// Development mode: loopback only, no TLS, and a one-time admin token (valid 24
        /// hours) printed at start.
        #[arg(long)]
        dev: bool,
    },
    /// Create, list and revoke the bearer tokens callers present.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Verify or export the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Apply pending migrations and load the shipped reference data, then exit.
    Migrate,
    /// Import a file of registry items (NDJSON or CSV, the items of ExchangeService.Import)
    /// through the same rules, with a results file of one line per input line; safe to re-run.
    Import {
        /// The file: .ndjson / .jsonl (one ImportItem per line, protobuf JSON) or .csv (a header
        /// of field paths, then one item per line).
        file: PathBuf,
        /// The layout, when the file's extension does not say it.
        #[arg(long, value_parser = ["ndjson", "csv"])]
        format: Option<String>,
        /// Where the results go (default: FILE.results.ndjson).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Items applied at once (their commits grouped).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: u16,
    },
    /// Export patient-level data for the systems that take it: pharmacovigilance cases (ICH
    /// E2B(R3) or case sheets), FHIR R4 resources. Every record written out is audited as read
    /// by this process.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Import official reference files (Orphanet, BDPM, ATC, MedDRA) as a new release, or
    /// list the releases recorded.
    Reference {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
    /// Write a consistent copy of the SQLite registry to a new file while it serves (PostgreSQL:
    /// use pg_dump, see the README).
    Backup {
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Snapshot the registry as of a cutoff and write the observatory report of a period.
    Report {
        /// The period: 2026-Q3, 2026-09 or 2026 (or give --from and --to).
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
        period: Option<String>,
        /// First day of the period, YYYY-MM-DD.
        #[arg(long, requires = "to")]
        from: Option<chrono::NaiveDate>,
        /// Last day of the period, YYYY-MM-DD.
        #[arg(long, requires = "from")]
        to: Option<chrono::NaiveDate>,
        /// Cutoff: records as the registry knew them at this instant (RFC 3339; default: now).
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        /// Output directory, new or empty (default: <reports_dir>/<period>_<cutoff>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Counts below this are published as "<threshold".
        #[arg(long, default_value_t = observatory_analytics::suppress::DEFAULT_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
        threshold: u32,
        /// CSV for French spreadsheet software: ';' separator and a byte-order mark.
        #[arg(long)]
        french_csv: bool,
        /// Language of the HTML page: fr (default) or en (tables keep their codes).
        #[arg(long, default_value = "fr")]
        language: String,
        /// Only the cohorts of this filiere (e.g. MHEMO).
        #[arg(long)]
        filiere: Option<String>,
        /// Only this cohort (its id).
        #[arg(long)]
        cohort: Option<String>,
    },
    /// Write the periodic synthesis of one framework (AAP, CPC, cohort ATU, RTU, accès direct)
    /// or one cohort: DOCX to finish with the rights holder, HTML, tables and manifest.
    Synthesis {
        /// The framework (its id).
        #[arg(long, conflicts_with = "cohort", required_unless_present = "cohort")]
        framework: Option<String>,
        /// The cohort (its id).
        #[arg(long)]
        cohort: Option<String>,
        /// The period: 2026-Q3, 2026-09, 2026 (or give --from and --to; neither: the next period
        /// due under the framework's interval between synthesis reports).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        period: Option<String>,
        /// First day of the period, YYYY-MM-DD.
        #[arg(long, requires = "to")]
        from: Option<chrono::NaiveDate>,
        /// Last day of the period, YYYY-MM-DD.
        #[arg(long, requires = "from")]
        to: Option<chrono::NaiveDate>,
        /// Cutoff: records as the registry knew them at this instant (RFC 3339; default: now).
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        /// Output directory, new or empty (default: <reports_dir>/synthesis_<id>_<period>_<cutoff>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Counts below this are published as "<threshold".
        #[arg(long, default_value_t = observatory_analytics::suppress::DEFAULT_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
        threshold: u32,
        /// Language of the document: fr (default) or en.
        #[arg(long, default_value = "fr")]
        language: String,
        /// CSV for French spreadsheet software: ';' separator and a byte-order mark.
        #[arg(long)]
        french_csv: bool,
    },
    /// Fill an empty registry with a realistic synthetic dataset (demos, benchmarks).
    Seed {
        /// Number of patients to generate.
        #[arg(long, default_value_t = 1000)]
        patients: u32,
        /// Generator seed: the same seed, patients and --until give the same content.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Last date of the generated history, YYYY-MM-DD (default: today).
        #[arg(long)]
        until: Option<chrono::NaiveDate>,
        /// Patient journeys written concurrently.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Adverse events as pharmacovigilance cases: one event (--id) or those whose onset falls
    /// within a period (--from, --to), as an ICH E2B(R3) message or case sheets to print.
    #[command(group(clap::ArgGroup::new("selection").required(true).args(["id", "from"])))]
    Cases {
        /// One adverse event, by its registry id.
        #[arg(long, conflicts_with_all = ["from", "to", "serious"])]
        id: Option<String>,
        /// First onset day of the period, YYYY-MM-DD.
        #[arg(long, requires = "to")]
        from: Option<chrono::NaiveDate>,
        /// Last onset day of the period, YYYY-MM-DD (at most three years after --from).
        #[arg(long, requires = "from")]
        to: Option<chrono::NaiveDate>,
        /// Serious events only.
        #[arg(long)]
        serious: bool,
        /// e2b (ICH E2B(R3) XML) or html (case sheets).
        #[arg(long, default_value = "e2b", value_parser = ["e2b", "html"])]
        format: String,
        /// The case sheets' language: fr or en.
        #[arg(long, default_value = "fr", value_parser = ["fr", "en"])]
        lang: String,
        /// The file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// The registry as FHIR R4 resources in the Bulk Data layout: one NDJSON file per resource
    /// type and a manifest.json, written last (docs/fhir.md).
    Fhir {
        /// The directory to write (created, or empty).
        #[arg(long)]
        out: PathBuf,
        /// Only this cohort (its id): its study, patients, their episodes in it and events.
        #[arg(long)]
        cohort: Option<String>,
        /// Only what changed after this instant (RFC 3339) or day (YYYY-MM-DD, from its start, UTC).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ReferenceCommand {
    /// Read one source's official files, in their own layouts, and record them as a release
    /// (nothing is recorded when a line is malformed; importing the same files again finds
    /// the release already recorded). Exactly one of --orphadata, --bdpm, --atc, --meddra.
    #[command(group(clap::ArgGroup::new("files").required(true).args(["orphadata", "bdpm", "atc", "meddra"])))]
    Import {
        /// The Orphanet nomenclature: an Orphadata product1 XML file (en_product1.xml...).
        #[arg(long, value_name = "FILE")]
        orphadata: Option<PathBuf>,
        /// The BDPM: a directory holding CIS_bdpm.txt, CIS_CIP_bdpm.txt and CIS_COMPO_bdpm.txt.
        #[arg(long, value_name = "DIR")]
        bdpm: Option<PathBuf>,
        /// An ATC list (delimited text with a header naming a code and a name column).
        #[arg(long, value_name = "FILE", requires = "source")]
        atc: Option<PathBuf>,
        /// Where the ATC list comes from (e.g. "WHO ATC/DDD Index 2026").
        #[arg(long)]
        source: Option<String>,
        /// MedDRA: a licensee's MedAscii directory (soc.asc, pt.asc, llt.asc, mdhier.asc).
        #[arg(long, value_name = "DIR")]
        meddra: Option<PathBuf>,
        /// The release's version (required for BDPM and ATC files, which name none).
        #[arg(long)]
        version: Option<String>,
        /// The release's date, YYYY-MM-DD (the date of the files' publication).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// List the releases recorded, oldest first, and which kinds each is in force for.
    Releases,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret, once: only its hash is kept.
    Create {
        /// prescriber, data_manager, analyst, partner or admin.
        #[arg(long, value_parser = parse_role)]
        role: observatory_domain::access::Role,
        /// A centre (FINESS) the token is bound to; repeat for several.
        #[arg(long = "centre")]
        centres: Vec<String>,
        /// A filière (e.g. MHEMO) the token is bound to; repeat for several.
        #[arg(long = "filiere")]
        filieres: Vec<String>,
        /// When the token stops working: 90d, a date (YYYY-MM-DD), an RFC 3339 instant, or never.
        #[arg(long, default_value = "90d")]
        expires: String,
        /// Hold the token as this client certificate (PEM) instead of a secret: under mutual
        /// TLS, calls over a connection presenting a certificate with the same subject act as
        /// the token. No secret is printed.
        #[arg(long, value_name = "PEM_FILE")]
        client_cert: Option<std::path::PathBuf>,
    },
    /// List every token: id, role, scope, expiry and state (never a secret).
    List,
    /// Revoke a token by its id; calls with it are refused from then on.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the whole hash chain: exit 0 when intact, 1 naming the first broken link.
    Verify {
        /// SEQ:HASH printed by an earlier verification, kept outside the database: that event
        /// must still be there (catches the removal of the newest events).
        #[arg(long, value_parser = observatory_server::audit::parse_anchor)]
        anchor: Option<observatory_store::audit::Anchor>,
    },
    /// Archive the events older than the retention period (`audit_retention_days`) to a new
    /// file, then remove them from the database; later verification goes on from the archive.
    Archive {
        /// The archive file to write (must not exist). Keep it apart from the database.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Archive the events recorded before this day (YYYY-MM-DD, UTC) or instant (RFC 3339)
        /// instead: at least the retention period ago unless --force.
        #[arg(long)]
        before: Option<String>,
        /// Allow --before later than the retention period.
        #[arg(long)]
        force: bool,
    },
    /// Check an archive file on its own: hashes, links and (with the audit key) MACs.
    VerifyArchive {
        /// The archive file.
        file: std::path::PathBuf,
    },
    /// Print the events of a period as JSON lines, oldest first.
    Export {
        /// First day (YYYY-MM-DD, UTC) or instant (RFC 3339) of the period.
        #[arg(long)]
        from: String,
        /// Last day included (YYYY-MM-DD, UTC), or the instant (RFC 3339) the period ends before.
        #[arg(long)]
        to: String,
    },
}

/// An instant (RFC 3339), or a day (YYYY-MM-DD) from its start, UTC.
fn parse_instant(raw: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("--since: {raw:?} is neither an RFC 3339 instant nor a day YYYY-MM-DD"))?;
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

fn parse_role(raw: &str) -> Result<observatory_domain::access::Role, String> {
    observatory_domain::access::Role::from_code(raw)
        .ok_or_else(|| "expected prescriber, data_manager, analyst, partner or admin".to_owned())
}

/// Principal recorded as the requester of report runs started on the command line.
const COMMAND_LINE_PRINCIPAL: &str = "command-line";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // OBSERVATORY_* configure the observatory; OTEL_* the OpenTelemetry export, read again by
    // the exporters themselves.
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OBSERVATORY_") || k.starts_with("OTEL_"))
        .collect();
    let config = Config::load(cli.config.as_deref(), &env)?;
    let telemetry = telemetry::init(&config.log_format, &env)?;
    let result = run(cli, config).await;
    telemetry.shutdown();
    result
}

/// Prints lines on stdout; a reader that stops early (`| head`, `| grep -q`) ends the output
/// quietly instead of failing the command.
fn print_lines(lines: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Commands::Serve { dev } => {
            let config = Config { dev, ..config };
            let app = Application::build(&config).await?;
            if let Some(token) = app.dev_admin_token() {
                // On stdout, never in the logs: shown once, kept nowhere but as a hash.
                println!("development mode: admin token for gRPC, valid 24 hours, shown once:\n{token}");
            }
            if let Some(addr) = app.web_addr() {
                println!("\nweb front: http://{addr}/");
                let links = app.sign_in_links();
                if !links.is_empty() {
                    println!("sign in (development mode, links valid 24 hours) as:");
                    for (who, link) in links {
                        println!("  {who:<32} {link}");
                    }
                }
            }
            app.run_until(shutdown_signal()).await
        }
        Commands::Token { command } => {
            use observatory_server::access;
            let store = open_store(&config).await?;
            let now = chrono::Utc::now();
            let result = match command {
                TokenCommand::Create {
                    role,
                    centres,
                    filieres,
                    expires,
                    client_cert,
                } => {
                    let client_subject = client_cert
                        .as_deref()
                        .map(access::client_certificate_subject)
                        .transpose()?;
                    let request = access::TokenRequest {
                        role,
                        centres,
                        filieres,
                        expires_at: access::parse_expiry(&expires, now)?,
                        client_subject,
                    };
                    access::create_token(&store, &request, access::COMMAND_LINE_ACTOR)
                        .await
                        .map(|(token, secret)| match &token.client_subject {
                            Some(subject) => {
                                eprintln!("token {} created, held as the client certificate {subject}", token.id);
                                println!("{}", token.id);
                            }
                            None => {
                                eprintln!("token {} created; its secret is shown once:", token.id);
                                println!("{secret}");
                            }
                        })
                }
                TokenCommand::List => match store.list_tokens().await {
                    Ok(tokens) => print_lines(&access::token_lines(&tokens, now)),
                    Err(e) => Err(e.into()),
                },
                TokenCommand::Revoke { id } => access::revoke_token(&store, &id, access::COMMAND_LINE_ACTOR)
                    .await
                    .map(|()| eprintln!("token {id} revoked")),
            };
            store.close().await;
            result
        }
        Commands::Import {
            file,
            format,
            results,
            concurrency,
        } => {
            use observatory_server::file_import::{self, Format};
            let store = open_store(&config).await?;
            let outcome = async {
                let app = observatory_app::App::open(store.clone(), std::sync::Arc::new(config.pseudonym_key()?))
                    .await
                    .context("cannot read the reference catalogue")?;
                let state = observatory_grpc::ApiState {
                    app,
                    store: store.clone(),
                    limiter: std::sync::Arc::new(observatory_grpc::bounds::RateLimiter::new(config.limits())),
                };
                let format = format
                    .as_deref()
                    .map(|f| if f == "csv" { Format::Csv } else { Format::Ndjson });
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                file_import::run(&state, &file, format, results, usize::from(concurrency), progress).await
            }
            .await;
            store.close().await;
            let summary = outcome?;
            eprintln!(
                "{} lines: {} accepted, {} refused; results in {}",
                summary.lines,
                summary.accepted,
                summary.refused,
                summary.results.display()
            );
            anyhow::ensure!(
                summary.refused == 0,
                "{} lines were refused: see {}",
                summary.refused,
                summary.results.display()
            );
            Ok(())
        }
        Commands::Export { command } => {
            let store = open_store(&config).await?;
            let result = async {
                let app = observatory_app::App::open(store.clone(), std::sync::Arc::new(config.pseudonym_key()?))
                    .await
                    .context("cannot read the reference catalogue")?;
                match command {
                    ExportCommand::Cases {
                        id,
                        from,
                        to,
                        serious,
                        format,
                        lang,
                        out,
                    } => {
                        let selection = match (id, from, to) {
                            (Some(id), ..) => observatory_app::cases::CaseSelection::One(
                                observatory_domain::model::RecordId::parse(&id)
                                    .map_err(|e| anyhow::anyhow!("--id: {}", e.description))?,
                            ),
                            (None, Some(from), Some(to)) => observatory_app::cases::CaseSelection::Period {
                                from,
                                to,
                                serious_only: serious,
                            },
                            _ => anyhow::bail!("name an event (--id) or a period (--from and --to)"),
                        };
                        let format = if format == "html" {
                            observatory_grpc::parse::CaseFormat::Html
                        } else {
                            observatory_grpc::parse::CaseFormat::E2bXml
                        };
                        let lang = observatory_app::cases::sheet::Lang::from_code(&lang).unwrap_or_default();
                        let n = observatory_server::exports::cases(&app, &selection, format, lang, &out).await?;
                        eprintln!("{n} case(s) written to {}", out.display());
                        Ok(())
                    }
                    ExportCommand::Fhir { out, cohort, since } => {
                        let cohort = cohort
                            .map(|c| {
                                observatory_domain::model::RecordId::parse(&c)
                                    .map_err(|e| anyhow::anyhow!("--cohort: {}", e.description))
                            })
                            .transpose()?;
                        let since = since.map(|s| parse_instant(&s)).transpose()?;
                        let asked = observatory_app::fhir::FhirExport { cohort, since };
                        let counts = observatory_server::exports::fhir(&app, asked, &out).await?;
                        for (t, n) in &counts {
                            eprintln!("{t}.ndjson\t{n}");
                        }
                        eprintln!("manifest written to {}", out.join("manifest.json").display());
                        Ok(())
                    }
                }
            }
            .await;
            store.close().await;
            result
        }
        Commands::Reference { command } => {
            use observatory_server::reference_import as reference;
            let store = open_store(&config).await?;
            let result = async {
                match command {
                    ReferenceCommand::Import {
                        orphadata,
                        bdpm,
                        atc,
                        source,
                        meddra,
                        version,
                        date,
                    } => {
                        let import = match (orphadata, bdpm, atc, meddra) {
                            (Some(f), ..) => reference::Import::Orphadata(f),
                            (_, Some(d), ..) => reference::Import::Bdpm(d),
                            (_, _, Some(file), _) => reference::Import::Atc {
                                file,
                                source: source.unwrap_or_default(),
                            },
                            (_, _, _, Some(d)) => reference::Import::Meddra(d),
                            _ => anyhow::bail!("name the files: --orphadata, --bdpm, --atc or --meddra"),
                        };
                        let (content, notes) = reference::read_release(&import, version.as_deref(), date)?;
                        for note in notes {
                            eprintln!("{note}");
                        }
                        let app =
                            observatory_app::App::open(store.clone(), std::sync::Arc::new(config.pseudonym_key()?))
                                .await
                                .context("cannot read the reference catalogue")?;
                        let imported = reference::import(&app, content).await?;
                        let r = &imported.release;
                        if imported.new {
                            eprintln!("release {} recorded: {} {}", r.seq, r.source.code(), r.version);
                        } else {
                            eprintln!(
                                "these files were imported before, as release {} ({} {}): nothing recorded",
                                r.seq,
                                r.source.code(),
                                r.version
                            );
                        }
                        let all = store.reference_releases().await?;
                        let prefix = format!("{}\t", r.seq);
                        let lines: Vec<String> = reference::release_lines(&all)
                            .into_iter()
                            .filter(|l| l.starts_with(&prefix))
                            .collect();
                        print_lines(&lines)
                    }
                    ReferenceCommand::Releases => {
                        let releases = store.reference_releases().await?;
                        print_lines(&reference::release_lines(&releases))
                    }
                }
            }
            .await;
            store.close().await;
            result
        }
        Commands::Seed {
            patients,
            seed,
            until,
            concurrency,
        } => {
            let store = open_store(&config).await?;
            let today = observatory_store::today(chrono::Utc::now());
            let until = until.unwrap_or(today);
            anyhow::ensure!(until <= today, "--until must not be in the future");
            let options = observatory_server::seed::SeedOptions {
                patients,
                seed,
                until,
                concurrency,
            };
            let started = std::time::Instant::now();
            let app = observatory_app::App::open(store.clone(), std::sync::Arc::new(config.pseudonym_key()?))
                .await
                .context("cannot read the reference catalogue")?;
            let summary = observatory_server::seed::seed(&app, &options).await;
            store.close().await;
            let summary = summary?;
            tracing::info!(?summary, elapsed_s = started.elapsed().as_secs_f64(), "seeded");
            Ok(())
        }
        Commands::Report {
            period,
            from,
            to,
            as_of,
            out,
            threshold,
            french_csv,
            language,
            filiere,
            cohort,
        } => {
            use observatory_analytics::{
                CsvStyle, Period,
                report::Scope,
                runs::{RunParameters, RunRequest, Runner},
            };
            use observatory_store::report_runs::RunTrigger;
            let filiere = filiere
                .map(|f| observatory_domain::codes::Filiere::parse(&f).map(String::from))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--filiere {e}"))?;
            let cohort = cohort
                .map(|c| observatory_domain::model::RecordId::parse(&c).map(String::from))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--cohort {e}"))?;
            let period = match (period, from, to) {
                (Some(p), _, _) => Period::parse(&p)?,
                (None, Some(from), Some(to)) => Period::between(from, to)?,
                _ => anyhow::bail!("give --period, or --from and --to"),
            };
            let now = chrono::Utc::now();
            let as_of = as_of.unwrap_or(now);
            anyhow::ensure!(
                as_of <= now,
                "--as-of must not be in the future: a report is about what the registry knew at a past instant"
            );
            if as_of.date_naive() <= period.to {
                tracing::warn!(%as_of, period = %period, "the period is not over at the cutoff: figures are provisional");
            }
            let out = out.unwrap_or_else(|| {
                config
                    .reports_dir
                    .join(format!("{}_{}", period.label(), as_of.format("%Y%m%dT%H%M%SZ")))
            });
            let csv = if french_csv {
                CsvStyle::French
            } else {
                CsvStyle::Standard
            };
            let request = RunRequest {
                parameters: RunParameters {
                    period_from: period.from,
                    period_to: period.to,
                    as_of: Some(as_of),
                    threshold,
                    csv,
                    scope: Scope { filiere, cohort },
                    synthesis: None,
                    language: observatory_analytics::synthesis::Language::parse(&language)
                        .ok_or_else(|| anyhow::anyhow!("--language: fr or en, not {language:?}"))?,
                },
                trigger: RunTrigger::CommandLine,
                schedule: None,
                attempt: 1,
                requested_by: COMMAND_LINE_PRINCIPAL.to_owned(),
                request_id: uuid::Uuid::now_v7().to_string(),
                idempotency_key: None,
            };
            let store = open_store(&config).await?;
            let runner = Runner::new(store.clone(), config.reports_dir.clone());
            let started = std::time::Instant::now();
            // A progress bar on a terminal; tracing spans say the same to log collectors.
            let result = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let bar = indicatif::ProgressBar::new(observatory_analytics::report::stage_count() as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                let shown = bar.clone();
                let result = runner
                    .run_now(request, out.clone(), move |stage| {
                        use observatory_analytics::report::Stage;
                        match stage {
                            Stage::Snapshot => shown.set_message("snapshot of the registry"),
                            Stage::Table { name, index, .. } => {
                                shown.set_position(index as u64);
                                shown.set_message(name.to_owned());
                            }
                            Stage::Done => shown.finish_with_message("done"),
                        }
                    })
                    .await;
                bar.finish_and_clear();
                result
            } else {
                runner.run_now(request, out.clone(), |_| {}).await
            };
            store.close().await;
            let (run_id, manifest) = result?;
            tracing::info!(
                %run_id,
                out = %out.display(),
                snapshot = %manifest.snapshot_hash(),
                tables = manifest.outputs().len(),
                elapsed_s = started.elapsed().as_secs_f64(),
                "report written"
            );
            Ok(())
        }
        Commands::Synthesis {
            framework,
            cohort,
            period,
            from,
            to,
            as_of,
            out,
            threshold,
            language,
            french_csv,
        } => {
            use observatory_analytics::{
                CsvStyle, Period,
                report::Scope,
                runs::{RunParameters, RunRequest, Runner, SynthesisRequest},
                synthesis::{Language, Target},
            };
            use observatory_store::report_runs::RunTrigger;
            let id = |flag: &str, v: String| {
                observatory_domain::model::RecordId::parse(&v)
                    .map(String::from)
                    .map_err(|e| anyhow::anyhow!("--{flag} {e}"))
            };
            let target = match (framework, cohort) {
                (Some(f), _) => Target::Framework(id("framework", f)?),
                (None, Some(c)) => Target::Cohort(id("cohort", c)?),
                (None, None) => anyhow::bail!("give --framework or --cohort"),
            };
            let language =
                Language::parse(&language).ok_or_else(|| anyhow::anyhow!("--language: fr or en, not {language:?}"))?;
            let asked = match (period, from, to) {
                (Some(p), _, _) => Some(Period::parse(&p)?),
                (None, Some(from), Some(to)) => Some(Period::between(from, to)?),
                (None, None, None) => None,
                _ => anyhow::bail!("give --period, or --from and --to, or neither for the next period due"),
            };
            let now = chrono::Utc::now();
            let as_of = as_of.unwrap_or(now);
            anyhow::ensure!(
                as_of <= now,
                "--as-of must not be in the future: a synthesis is about what the registry knew at a past instant"
            );
            let store = open_store(&config).await?;
            // An unknown framework or cohort is named at once, before any run is recorded.
            let known = match &target {
                Target::Framework(id) => store.get::<observatory_domain::model::Framework>(id).await?.is_some(),
                Target::Cohort(id) => store.get::<observatory_domain::model::Cohort>(id).await?.is_some(),
            };
            let period = match (known, asked) {
                (false, _) => Err(anyhow::anyhow!(
                    "no {} {} in the registry",
                    match &target {
                        Target::Framework(_) => "framework",
                        Target::Cohort(_) => "cohort",
                    },
                    match &target {
                        Target::Framework(id) | Target::Cohort(id) => id,
                    }
                )),
                (true, Some(period)) => Ok(period),
                // The same rule as RunSynthesis with no period.
                (true, None) => observatory_app::reports::next_synthesis_period(&store, &target, now.date_naive())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .and_then(|(from, to)| Ok(Period::between(from, to)?)),
            };
            let period = match period {
                Ok(period) => period,
                Err(e) => {
                    store.close().await;
                    return Err(e);
                }
            };
            tracing::info!(period = %period, "synthesis period");
            if as_of.date_naive() <= period.to {
                tracing::warn!(%as_of, period = %period, "the period is not over at the cutoff: figures are provisional");
            }
            let subject = match &target {
                Target::Framework(id) | Target::Cohort(id) => id.clone(),
            };
            let out = out.unwrap_or_else(|| {
                config.reports_dir.join(format!(
                    "synthesis_{subject}_{}_{}",
                    period.label(),
                    as_of.format("%Y%m%dT%H%M%SZ")
                ))
            });
            let request = RunRequest {
                parameters: RunParameters {
                    period_from: period.from,
                    period_to: period.to,
                    as_of: Some(as_of),
                    threshold,
                    csv: if french_csv {
                        CsvStyle::French
                    } else {
                        CsvStyle::Standard
                    },
                    scope: Scope::default(),
                    synthesis: Some(SynthesisRequest { target, language }),
                    // The synthesis's language is its own; this one is a report page's.
                    language: Language::En,
                },
                trigger: RunTrigger::CommandLine,
                schedule: None,
                attempt: 1,
                requested_by: COMMAND_LINE_PRINCIPAL.to_owned(),
                request_id: uuid::Uuid::now_v7().to_string(),
                idempotency_key: None,
            };
            let runner = Runner::new(store.clone(), config.reports_dir.clone());
            let started = std::time::Instant::now();
            let result = runner.run_now(request, out.clone(), |_| {}).await;
            store.close().await;
            let (run_id, manifest) = result?;
            tracing::info!(
                %run_id,
                out = %out.display(),
                snapshot = %manifest.snapshot_hash(),
                outputs = manifest.outputs().len(),
                elapsed_s = started.elapsed().as_secs_f64(),
                "synthesis written"
            );
            Ok(())
        }
        Commands::Audit { command } => {
            use observatory_server::audit;
            let store = open_store(&config).await?;
            let result: anyhow::Result<bool> = match command {
                AuditCommand::Verify { anchor } => {
                    store.verify_audit(anchor.as_ref()).await.map_err(Into::into).map(|v| {
                        let (intact, text) = audit::verification_report(&v);
                        println!("{text}");
                        intact
                    })
                }
                AuditCommand::Archive { out, before, force } => {
                    async {
                        let retention = chrono::Duration::days(i64::from(config.audit_retention_days));
                        let oldest_allowed = chrono::Utc::now() - retention;
                        let before = match before {
                            Some(raw) => audit::parse_bound(&raw, false)?,
                            None => oldest_allowed,
                        };
                        anyhow::ensure!(
                            force || before <= oldest_allowed,
                            "--before is within the retention period of {} days: events are kept that long (--force to archive them anyway)",
                            config.audit_retention_days
                        );
                        match audit::archive(&store, before, &out).await? {
                            None => println!("no event recorded before {before}: nothing archived"),
                            Some(a) => println!(
                                "events {} to {} archived to {} (SHA-256 {}) and removed ({} events)\nlast archived: {}:{}",
                                a.first_seq,
                                a.last_seq,
                                out.display(),
                                a.file_sha256,
                                a.removed,
                                a.last_seq,
                                a.last_hash
                            ),
                        }
                        Ok(true)
                    }
                    .await
                }
                AuditCommand::VerifyArchive { file } => {
                    async {
                        let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                        let key = config.audit_key()?;
                        match audit::verify_archive(&bytes, Some(&key)) {
                            Ok((first, last, hash, sha)) => {
                                println!("archive intact: events {first} to {last}, last {last}:{hash}, file SHA-256 {sha}");
                                Ok(true)
                            }
                            Err(e) => {
                                println!("archive BROKEN: {e:#}");
                                Ok(false)
                            }
                        }
                    }
                    .await
                }
                AuditCommand::Export { from, to } => {
                    async {
                        let (from, to) = (audit::parse_bound(&from, false)?, audit::parse_bound(&to, true)?);
                        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                        let n = audit::export(&store, from, to, &mut out).await?;
                        eprintln!("{n} events exported");
                        Ok(true)
                    }
                    .await
                }
            };
            store.close().await;
            if !result? {
                std::process::exit(1);
            }
            Ok(())
        }
        Commands::Backup { out } => {
            anyhow::ensure!(
                config.database_url.starts_with("sqlite:"),
                "a PostgreSQL registry is backed up with pg_dump: pg_dump --format=custom --file FILE DATABASE_URL \
                 (README, Operations)"
            );
            let store = open_store(&config).await?;
            let done = store.backup(&out).await;
            store.close().await;
            done?;
            println!(
                "registry backed up to {}; keep the pseudonymisation and audit keys apart from it",
                out.display()
            );
            Ok(())
        }
        Commands::Migrate => {
            let store = open_store(&config).await?;
            store.close().await;
            tracing::info!(database = %observatory_store::redact_url(&config.database_url), "database migrated and reference data loaded");
            Ok(())
        }
    }
}
