//! `observatory import FILE`: the items of `ExchangeService.Import`, one per line of an NDJSON
//! or CSV file, applied through the same parsing, rules and application-layer operations as the
//! stream, with a progress bar and a results file of one line per input line. See
//! `docs/exchange.md` for the layouts.
//!
//! Re-running the same file is safe: an item whose write takes an idempotency key and leaves it
//! empty gets one derived from its reference (or, without one, from the file's checksum and its
//! line number), so a second run replays the first run's answers instead of writing again.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::StreamExt;
use observatory_grpc::{ApiState, RegistryApi};
use observatory_proto::v1::{self as pb, history_entry::Record as H, import_item::Write as W};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::access::COMMAND_LINE_ACTOR;

/// Largest line read (an item is a few hundred bytes; the gRPC import takes 4 MiB messages).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The layouts of an import file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One `ImportItem` per line in the protobuf JSON mapping, as grpcurl sends them.
    Ndjson,
    /// A header of field paths (`reference`, `register_patient.idmr`,
    /// `register_patient.diagnoses[0].orpha_code`...), then one item per line; empty cells are
    /// left out.
    Csv,
}

impl Format {
    /// The layout a file's extension names (`.ndjson`, `.jsonl`, `.csv`).
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub lines: usize,
    pub accepted: usize,
    pub refused: usize,
    pub results: PathBuf,
}

/// One column of a CSV file: its path in the item and the kind of its leaf.
struct Column {
    path: Vec<(String, Option<usize>)>,
    kind: Kind,
}

fn import_item_descriptor() -> anyhow::Result<MessageDescriptor> {
    let pool = DescriptorPool::decode(observatory_proto::FILE_DESCRIPTOR_SET).context("the contract's descriptors")?;
    pool.get_message_by_name("observatory.v1.ImportItem")
        .context("the contract has no ImportItem")
}

/// `a.b[2].c` as segments with their indices.
fn segments(path: &str) -> Option<Vec<(String, Option<usize>)>> {
    path.split('.')
        .map(|s| match s.split_once('[') {
            None if !s.is_empty() => Some((s.to_owned(), None)),
            Some((name, rest)) if !name.is_empty() => {
                let i: usize = rest.strip_suffix(']')?.parse().ok()?;
                (i < 100).then(|| (name.to_owned(), Some(i)))
            }
            _ => None,
        })
        .collect()
}

/// The columns of a header, each checked against the contract.
fn columns(item: &MessageDescriptor, header: &[String]) -> anyhow::Result<Vec<Column>> {
    header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let bad = |why: &str| anyhow::anyhow!("header column {} `{name}`: {why}", i + 1);
            let path = segments(name)
                .ok_or_else(|| bad("is not a field path such as register_patient.diagnoses[0].orpha_code"))?;
            let mut message = item.clone();
            let mut kind = None;
            for (n, (segment, index)) in path.iter().enumerate() {
                let field = message
                    .get_field_by_name(segment)
                    .ok_or_else(|| bad(&format!("{} has no field {segment}", message.name())))?;
                if index.is_some() != field.is_list() {
                    return Err(bad(&format!(
                        "{segment} {}",
                        if field.is_list() {
                            "is repeated: give its index, [0]"
                        } else {
                            "is not repeated"
                        }
                    )));
                }
                let last = n + 1 == path.len();
                match (field.kind(), last) {
                    (Kind::Message(m), false) => message = m,
                    (Kind::Message(_), true) => return Err(bad("names a message, not a value")),
                    (_, false) => return Err(bad(&format!("{segment} is a value, not a message"))),
                    (k, true) => kind = Some(k),
                }
            }
            Ok(Column {
                path,
                kind: kind.ok_or_else(|| bad("is empty"))?,
            })
        })
        .collect()
}

/// Sets `value` at `path` in `root`, creating objects and arrays on the way.
fn set(root: &mut Map<String, Value>, path: &[(String, Option<usize>)], value: Value) {
    let Some(((name, index), rest)) = path.split_first() else {
        return;
    };
    let slot = root.entry(name.clone()).or_insert_with(|| match index {
        Some(_) => Value::Array(Vec::new()),
        None => Value::Object(Map::new()),
    });
    let slot = match (index, slot) {
        (Some(i), Value::Array(a)) => {
            while a.len() <= *i {
                a.push(if rest.is_empty() {
                    Value::Null
                } else {
                    Value::Object(Map::new())
                });
            }
            &mut a[*i]
        }
        (_, slot) => slot,
    };
    if rest.is_empty() {
        *slot = value;
    } else if let Value::Object(m) = slot {
        set(m, rest, value);
    }
}

/// The JSON value of a cell, by the kind of its field (the JSON mapping wants numbers and
/// booleans as such; enums, strings and 64-bit integers as strings are accepted).
fn cell(kind: &Kind, raw: &str) -> Value {
    let number = || {
        raw.parse::<serde_json::Number>()
            .map_or_else(|_| json!(raw), Value::Number)
    };
    match kind {
        Kind::Bool => match raw {
            "true" | "TRUE" | "1" => Value::Bool(true),
            "false" | "FALSE" | "0" => Value::Bool(false),
            _ => json!(raw),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 | Kind::Float | Kind::Double => {
            number()
        }
        _ => json!(raw),
    }
}

/// A line as an item, or why it is not one (without the JSON parser's position, which would
/// point into the line as rebuilt, not as written).
fn item_of(descriptor: &MessageDescriptor, json: &str) -> Result<pb::ImportItem, String> {
    let why = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        match text.find(" at line ") {
            Some(at) => text[..at].to_owned(),
            None => text,
        }
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(descriptor.clone(), &mut de).map_err(|e| why(&e))?;
    de.end().map_err(|e| why(&e))?;
    pb::ImportItem::decode(message.encode_to_vec().as_slice()).map_err(|e| why(&e))
}

/// Every leaf of a JSON value with its field path (`register_patient.diagnoses[0].status`), and
/// the same leaf alone in an object of its own (arrays holding it at index 0).
fn leaves(value: &Value, path: &str, probe: &dyn Fn(Value) -> Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, &p, &|leaf| probe(json!({ k.clone(): leaf })), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                leaves(v, &format!("{path}[{i}]"), &|leaf| probe(json!([leaf])), out);
            }
        }
        leaf => out.push((path.to_owned(), probe(leaf.clone()))),
    }
}

/// Why a JSON object is not an item, field by field: each leaf is tried alone, and those the
/// contract refuses are named with their path. Empty when no single field explains it.
fn field_errors(descriptor: &MessageDescriptor, value: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    leaves(value, "", &|leaf| leaf, &mut all);
    all.into_iter()
        .filter_map(|(path, alone)| {
            item_of(descriptor, &alone.to_string())
                .err()
                .map(|why| json!({"field": path, "description": why}))
        })
        .collect()
}

/// The key an item takes when it gives none: from its reference (or the file and line), the
/// same on every run of the same file.
fn derived_key(file_sha256: &str, reference: &str, line: usize) -> String {
    let basis = if reference.is_empty() {
        format!("{file_sha256}:line:{line}")
    } else {
        format!("reference:{reference}")
    };
    let digest = hex::encode(Sha256::digest(basis.as_bytes()));
    format!("import-{}", &digest[..32])
}

fn fill_key(item: &mut pb::ImportItem, key: String) {
    let slot = match item.write.as_mut() {
        Some(W::RegisterPatient(m)) => &mut m.idempotency_key,
        Some(W::DeclareEpisode(m)) => &mut m.idempotency_key,
        Some(W::RecordFollowUp(m)) => &mut m.idempotency_key,
        Some(W::RecordAdverseEvent(m)) => &mut m.idempotency_key,
        _ => return,
    };
    if slot.is_empty() {
        *slot = key;
    }
}

/// The kind, id and version of what an item wrote.
fn written(record: &H) -> (&'static str, String, i64) {
    let (kind, meta) = match record {
        H::Centre(x) => ("CENTRE", x.meta.as_ref()),
        H::Prescriber(x) => ("PRESCRIBER", x.meta.as_ref()),
        H::Framework(x) => ("FRAMEWORK", x.meta.as_ref()),
        H::Cohort(x) => ("COHORT", x.meta.as_ref()),
        H::Patient(x) => ("PATIENT", x.meta.as_ref()),
        H::Episode(x) => ("EPISODE", x.meta.as_ref()),
        H::Authorisation(x) => ("AUTHORISATION", x.meta.as_ref()),
        H::FollowUp(x) => ("FOLLOW_UP", x.meta.as_ref()),
        H::AdverseEvent(x) => ("ADVERSE_EVENT", x.meta.as_ref()),
    };
    let (id, version) = meta.map_or((String::new(), 0), |m| (m.id.clone(), m.version));
    (kind, id, version)
}

fn refused_line(line: usize, reference: &str, code: &str, message: &str, violations: Value) -> Value {
    json!({"line": line, "reference": reference, "status": "REFUSED", "code": code, "message": message, "violations": violations})
}

/// The results line of an applied item.
fn result_line(line: usize, result: &pb::ImportResult) -> Value {
    match &result.outcome {
        Some(pb::import_result::Outcome::Written(pb::HistoryEntry { record: Some(record) })) => {
            let (kind, id, version) = written(record);
            json!({"line": line, "reference": result.reference, "status": "ACCEPTED", "kind": kind, "id": id, "version": version})
        }
        Some(pb::import_result::Outcome::Error(e)) => refused_line(
            line,
            &result.reference,
            observatory_grpc::error::code_name(tonic::Code::from_i32(e.code)),
            &e.message,
            e.violations
                .iter()
                .map(|v| json!({"field": v.field, "description": v.description}))
                .collect(),
        ),
        _ => refused_line(line, &result.reference, "INTERNAL", "no outcome", json!([])),
    }
}

/// Imports `file` (in `format`, else the one its extension names) as the command line, up to
/// `concurrency` items in flight (their commits grouped), writing one results line per input
/// line to `results` (default: `FILE.results.ndjson` beside it). Reading fails before any
/// write on an unreadable file or a CSV header naming no field of the contract.
pub async fn run(
    state: &ApiState,
    file: &Path,
    format: Option<Format>,
    results: Option<PathBuf>,
    concurrency: usize,
    progress: bool,
) -> anyhow::Result<Summary> {
    let format = format
        .or_else(|| Format::of(file))
        .context("say the layout with --format ndjson or --format csv (the file's extension does not)")?;
    let results = results.unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".results.ndjson");
        PathBuf::from(name)
    });
    // First pass: the file's checksum and its number of lines, for derived keys and progress.
    let (file_sha256, total) = {
        let mut reader =
            BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?);
        let mut h = Sha256::new();
        let mut n = 0usize;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf)?;
            if read == 0 {
                break;
            }
            h.update(&buf);
            n += 1;
        }
        (hex::encode(h.finalize()), n)
    };
    let descriptor = import_item_descriptor()?;
    let mut lines = BufReader::new(std::fs::File::open(file)?).lines().enumerate();
    let header = match format {
        Format::Ndjson => None,
        Format::Csv => {
            let (_, first) = lines
                .next()
                .context("the CSV file is empty: it needs a header of field paths")?;
            let names = observatory_domain::reference_files::split_delimited(first?.trim_end_matches('\r'), ',')
                .map_err(|m| anyhow::anyhow!("header: {m}"))?;
            Some((columns(&descriptor, &names)?, names.len()))
        }
    };
    let reference_column = header.as_ref().and_then(|(cols, _)| {
        cols.iter()
            .position(|c| c.path.len() == 1 && c.path[0].0 == "reference")
    });
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&results).with_context(|| format!("cannot write {}", results.display()))?,
    );
    let bar = if progress {
        indicatif::ProgressBar::new(total as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} lines, {per_sec}, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let registry = RegistryApi::new(state.clone());
    let call = observatory_app::Call::local(COMMAND_LINE_ACTOR, "Import", uuid::Uuid::now_v7().to_string());

    // Each line parsed into an item, or the results line of its refusal.
    enum Parsed {
        Item(usize, Box<pb::ImportItem>),
        Refused(Value),
        Blank,
    }
    let parse = |(i, line): (usize, std::io::Result<String>)| -> Parsed {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                return Parsed::Refused(refused_line(
                    n,
                    "",
                    "INVALID_ARGUMENT",
                    &format!("unreadable line: {e}"),
                    json!([]),
                ));
            }
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return Parsed::Blank;
        }
        if line.len() > MAX_LINE_BYTES {
            return Parsed::Refused(refused_line(
                n,
                "",
                "INVALID_ARGUMENT",
                &format!("the line is longer than {MAX_LINE_BYTES} bytes"),
                json!([]),
            ));
        }
        let json = match &header {
            None => line.to_owned(),
            Some((cols, width)) => {
                let cells = match observatory_domain::reference_files::split_delimited(line, ',') {
                    Ok(c) if c.len() == *width => c,
                    Ok(c) => {
                        let why = format!("has {} cells, the header {width}", c.len());
                        let reference = reference_column.and_then(|i| c.get(i)).map_or("", String::as_str);
                        return Parsed::Refused(refused_line(n, reference, "INVALID_ARGUMENT", &why, json!([])));
                    }
                    Err(m) => return Parsed::Refused(refused_line(n, "", "INVALID_ARGUMENT", m, json!([]))),
                };
                let mut root = Map::new();
                for (col, raw) in cols.iter().zip(&cells) {
                    if !raw.is_empty() {
                        set(&mut root, &col.path, cell(&col.kind, raw));
                    }
                }
                Value::Object(root).to_string()
            }
        };
        match item_of(&descriptor, &json) {
            Ok(mut item) => {
                let key = derived_key(&file_sha256, &item.reference, n);
                fill_key(&mut item, key);
                Parsed::Item(n, Box::new(item))
            }
            Err(why) => {
                // The reference and the fields at fault, where the line is JSON at all.
                let value: Option<Value> = serde_json::from_str(&json).ok();
                let reference: String = value
                    .as_ref()
                    .and_then(|v| v.get("reference"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(100)
                    .collect();
                let violations = value.map(|v| field_errors(&descriptor, &v)).unwrap_or_default();
                Parsed::Refused(refused_line(
                    n,
                    &reference,
                    "INVALID_ARGUMENT",
                    &format!("not an import item: {why}"),
                    Value::Array(violations),
                ))
            }
        }
    };
    let mut stream = futures_util::stream::iter(lines.map(parse))
        .map(|parsed| {
            let registry = &registry;
            let call = &call;
            async move {
                match parsed {
                    Parsed::Item(n, item) => {
                        let (_, result) =
                            observatory_grpc::exchange::import_item(registry, call, n as u64 - 1, *item).await;
                        Some(result_line(n, &result))
                    }
                    Parsed::Refused(v) => Some(v),
                    Parsed::Blank => None,
                }
            }
        })
        .buffered(concurrency.max(1));
    let (mut lines_seen, mut accepted, mut refused) = (0, 0, 0);
    while let Some(result) = stream.next().await {
        bar.inc(1);
        let Some(result) = result else { continue };
        lines_seen += 1;
        if result["status"] == "ACCEPTED" {
            accepted += 1;
        } else {
            refused += 1;
        }
        writeln!(out, "{result}")?;
    }
    out.flush()?;
    bar.finish_and_clear();
    Ok(Summary {
        lines: lines_seen,
        accepted,
        refused,
        results,
    })
}
