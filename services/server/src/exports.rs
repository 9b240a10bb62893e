//! `observatory export`: patient-level exports written by a local process, through the same
//! operations (and audit) as the API: pharmacovigilance case files.

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
