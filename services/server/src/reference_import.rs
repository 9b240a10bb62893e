//! `observatory reference import` and `observatory reference releases`: the official reference
//! files read from disk, parsed whole (a malformed line refuses the whole release, naming its
//! file and line), then recorded as one release through the application layer.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;
use observatory_domain::catalogue::{self, Release, ReleaseContent};
use observatory_domain::reference_files::{self as files, InputFile, MAX_FILE_BYTES};

use crate::access::COMMAND_LINE_ACTOR;

/// Which official files to read.
#[derive(Debug, Clone)]
pub enum Import {
    /// An Orphadata `product1` XML file.
    Orphadata(PathBuf),
    /// A directory holding `CIS_bdpm.txt`, `CIS_CIP_bdpm.txt` and `CIS_COMPO_bdpm.txt`.
    Bdpm(PathBuf),
    /// An ATC list, and where it comes from.
    Atc { file: PathBuf, source: String },
    /// A directory holding MedDRA's `soc.asc`, `pt.asc`, `llt.asc`, `mdhier.asc` (and
    /// `meddra_release.asc`), as the `MedAscii` folder of a distribution.
    Meddra(PathBuf),
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_FILE_BYTES,
        "{} is {len} bytes, more than the {MAX_FILE_BYTES} a reference file may have",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads `name` in `dir`, whatever the case of its name (distributions differ: `LLT.ASC`).
fn read_in(dir: &Path, name: &str) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read the directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.eq_ignore_ascii_case(name) {
            return Ok(Some((file_name, read(&entry.path())?)));
        }
    }
    Ok(None)
}

fn require_in(dir: &Path, name: &str) -> anyhow::Result<(String, Vec<u8>)> {
    read_in(dir, name)?.with_context(|| format!("{} holds no {name}", dir.display()))
}

fn input((name, bytes): &(String, Vec<u8>)) -> InputFile<'_> {
    InputFile { name, bytes }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads and parses the files of `import`; `version` and `date` name the release where the
/// files do not (the BDPM and ATC files carry neither) or override what they say. Returns the
/// release and notes for the operator (encodings found, rows skipped).
pub fn read_release(
    import: &Import,
    version: Option<&str>,
    date: Option<NaiveDate>,
) -> anyhow::Result<(ReleaseContent, Vec<String>)> {
    let mut notes = Vec::new();
    let mut content = match import {
        Import::Orphadata(path) => {
            let bytes = read(path)?;
            let name = file_name(path);
            files::orphadata::parse(InputFile {
                name: &name,
                bytes: &bytes,
            })?
        }
        Import::Bdpm(dir) => {
            let version = version.context("a BDPM release needs --version (its files do not name one)")?;
            let (s_name, s) = require_in(dir, "CIS_bdpm.txt")?;
            let (p_name, p) = require_in(dir, "CIS_CIP_bdpm.txt")?;
            let (c_name, c) = require_in(dir, "CIS_COMPO_bdpm.txt")?;
            let parsed = files::bdpm::parse(
                files::bdpm::Files {
                    specialities: InputFile {
                        name: &s_name,
                        bytes: &s,
                    },
                    presentations: InputFile {
                        name: &p_name,
                        bytes: &p,
                    },
                    compositions: InputFile {
                        name: &c_name,
                        bytes: &c,
                    },
                },
                version,
                date,
            )?;
            for (name, encoding) in &parsed.encodings {
                notes.push(format!("{name}: read as {encoding:?}"));
            }
            parsed.content
        }
        Import::Atc { file, source } => {
            let version = version.context("an ATC list needs --version (its file does not name one)")?;
            let bytes = read(file)?;
            let name = file_name(file);
            let parsed = files::atc::parse(
                InputFile {
                    name: &name,
                    bytes: &bytes,
                },
                source,
                version,
                date,
            )?;
            notes.push(format!(
                "{name}: {} codes of ATC levels 1 to 4 skipped (drugs are substance-level codes)",
                parsed.skipped_levels
            ));
            parsed.content
        }
        Import::Meddra(dir) => {
            let soc = require_in(dir, "soc.asc")?;
            let pt = require_in(dir, "pt.asc")?;
            let llt = require_in(dir, "llt.asc")?;
            let mdhier = require_in(dir, "mdhier.asc")?;
            let release = read_in(dir, "meddra_release.asc")?;
            let mut content = files::meddra::parse(
                files::meddra::Files {
                    soc: input(&soc),
                    pt: input(&pt),
                    llt: input(&llt),
                    mdhier: input(&mdhier),
                    release: release.as_ref().map(input),
                },
                version,
            )?;
            content.release_date = date;
            return Ok((content, notes));
        }
    };
    // The Orphadata file names its version; --version overrides it (the others took it above).
    if let (Some(v), Import::Orphadata(_)) = (version.filter(|v| !v.trim().is_empty()), import) {
        content.version = v.trim().to_owned();
    }
    if date.is_some() {
        content.release_date = date;
    }
    anyhow::ensure!(
        !content.version.trim().is_empty(),
        "the release has no version: give --version"
    );
    Ok((content, notes))
}

/// Records `content` through the application layer, as the command line.
pub async fn import(
    app: &observatory_app::App,
    content: ReleaseContent,
) -> anyhow::Result<observatory_app::reference::Imported> {
    let call = observatory_app::Call::local(
        COMMAND_LINE_ACTOR,
        "ImportReferenceRelease",
        uuid::Uuid::now_v7().to_string(),
    );
    Ok(observatory_app::reference::import_release(app, &call, content).await?)
}

/// One line per release, for `observatory reference releases`.
pub fn release_lines(releases: &[Release]) -> Vec<String> {
    let in_force = catalogue::in_force_for(releases);
    releases
        .iter()
        .map(|r| {
            let kinds: Vec<&str> = in_force.get(&r.seq).into_iter().flatten().map(|k| k.code()).collect();
            let counts: Vec<String> = r.counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
            format!(
                "{seq}\t{source}\t{version}\t{date}\t{sha}\t{counts}\t{at}\t{by}\t{force}",
                seq = r.seq,
                source = r.source.code(),
                version = r.version,
                date = r.release_date.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                sha = &r.sha256[..12.min(r.sha256.len())],
                counts = counts.join(","),
                at = r.imported_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                by = r.imported_by,
                force = if kinds.is_empty() {
                    "superseded".to_owned()
                } else {
                    format!("in force: {}", kinds.join(","))
                },
            )
        })
        .collect()
}
