//! `observatory export`: patient-level exports written by a local process, through the same
//! operations (and audit) as the API: pharmacovigilance case files, and the FHIR R4 Bulk Data
//! export.

use std::path::Path;

use anyhow::Context;
use observatory_app::{
    App, Call,
    cases::{self, CaseFile, CaseSelection, sheet::Lang},
};
use observatory_grpc::parse::CaseFormat;
use observatory_store::PageRequest;

/// How the command line is named in the audit trail.
pub const ACTOR: &str = "command-line";

/// Writes the case file of `selection` to `out` (a new file): every case of a period, read a
/// page at a time, in one file. Returns how many cases it holds.
pub async fn cases(
    app: &App,
    selection: &CaseSelection,
    format: CaseFormat,
    lang: Lang,
    out: &Path,
) -> anyhow::Result<usize> {
    let call = Call::local(ACTOR, "ExportAdverseEvents", uuid::Uuid::now_v7().to_string());
    let mut page = PageRequest {
        size: cases::MAX_CASES,
        token: None,
    };
    let mut all: Option<CaseFile> = None;
    loop {
        let file = cases::export_cases(app, &call, selection, &page)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let next = file.next_page_token.clone();
        match &mut all {
            None => all = Some(file),
            Some(all) => all.cases.extend(file.cases),
        }
        match next {
            Some(token) => page.token = Some(token),
            None => break,
        }
    }
    let mut file = all.context("no page was read")?;
    file.next_page_token = None;
    let (content, _, _) = format.render(&file, lang);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    std::io::Write::write_all(&mut f, content.as_bytes()).with_context(|| format!("cannot write {}", out.display()))?;
    f.sync_all()?;
    Ok(file.cases.len())
}

/// Writes a FHIR R4 Bulk Data export to `out` (created, or an empty directory): one
/// `<ResourceType>.ndjson` file per resource type with data, written as the batches come, then
/// `manifest.json`, last, so that a directory with a manifest holds a finished export. Returns
/// each file's resource type and count.
pub async fn fhir(
    app: &App,
    asked: observatory_app::fhir::FhirExport,
    out: &Path,
) -> anyhow::Result<Vec<(&'static str, u64)>> {
    use std::io::Write as _;
    if out.exists() {
        let mut entries = std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?;
        anyhow::ensure!(
            entries.next().is_none(),
            "{} is not empty: export into a new or empty directory",
            out.display()
        );
    } else {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let mut request = "observatory export fhir".to_owned();
    if let Some(c) = &asked.cohort {
        request.push_str(&format!(" --cohort {c}"));
    }
    if let Some(t) = asked.since {
        request.push_str(&format!(" --since {}", t.to_rfc3339()));
    }
    let started = chrono::Utc::now();
    let call = Call::local(ACTOR, "ExportFhir", uuid::Uuid::now_v7().to_string());
    let mut export = observatory_app::fhir::start(app, &call, asked)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut files: Vec<(&'static str, std::io::BufWriter<std::fs::File>, u64)> = Vec::new();
    while let Some(batch) = export.next().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        for (resource_type, lines) in batch.parts {
            let at = match files.iter().position(|(t, _, _)| *t == resource_type) {
                Some(at) => at,
                None => {
                    let path = out.join(format!("{resource_type}.ndjson"));
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    files.push((resource_type, std::io::BufWriter::new(file), 0));
                    files.len() - 1
                }
            };
            let (_, writer, count) = &mut files[at];
            for line in &lines {
                writer.write_all(line.as_bytes())?;
                writer.write_all(b"\n")?;
            }
            *count += lines.len() as u64;
        }
    }
    let mut counts = Vec::with_capacity(files.len());
    for (resource_type, writer, count) in files {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        counts.push((resource_type, count));
    }
    counts.sort_by_key(|(t, _)| observatory_app::fhir::RESOURCE_TYPES.iter().position(|x| x == t));
    let listed: Vec<(&str, String, u64)> = counts.iter().map(|(t, n)| (*t, format!("{t}.ndjson"), *n)).collect();
    let manifest = observatory_app::fhir::manifest(started, &request, &listed);
    let path = out.join("manifest.json");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    f.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(counts)
}
