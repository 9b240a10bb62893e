//! The codec of every observatory service: prost, with each request's repeated fields counted
//! on the wire before the message is decoded.
//!
//! Decoding a message allocates for every element of a repeated field, and an element can cost
//! far more in memory than on the wire (an empty `Diagnosis` is two bytes there and over a
//! hundred in memory; a packed enum value one byte and four). A 4 MiB request of repeated
//! values could therefore cost the server gigabytes before any handler could refuse it. So the
//! decoder of a request message (the input of an RPC, and everything nested in it) first walks
//! its bytes without allocating, counts the elements of each repeated field in each message
//! instance against [`MAX_ITEMS`], and refuses the request with INVALID_ARGUMENT naming the
//! field path before prost decodes anything. A malformed message is INVALID_ARGUMENT too (prost's
//! own codec answers INTERNAL, as if the server were at fault).
//!
//! Every repeated field that a request can carry has its maximum in [`MAX_ITEMS`] (a test
//! checks that none is missing), stated in the proto comments and the README.

use std::{
    collections::{HashMap, HashSet},
    marker::PhantomData,
    sync::OnceLock,
};

use prost::{Message, Name};
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

/// The most elements each repeated field of a request may hold, by `package.Message.field`.
pub const MAX_ITEMS: &[(&str, usize)] = &[
    ("observatory.v1.CreateFrameworkRequest.orpha_codes", 50),
    ("observatory.v1.CreateCohortRequest.orpha_codes", 50),
    // Each of the 23 filières at most once.
    ("observatory.v1.CreateCentreRequest.filieres", 23),
    ("observatory.v1.FiliereList.filieres", 23),
    ("observatory.v1.RegisterPatientRequest.diagnoses", 20),
    ("observatory.v1.DiagnosisList.diagnoses", 20),
    ("observatory.v1.CommonDataElements.genotype", 5),
    ("observatory.v1.Genotype.variants", 4),
    // Each of the four axes at most once.
    ("observatory.v1.OffLabelJustification.axes", 4),
    ("observatory.v1.RecordFollowUpRequest.measures", 50),
    ("observatory.v1.MeasureList.measures", 50),
    // Each of the six criteria at most once.
    ("observatory.v1.CaseDetails.seriousness", 6),
    // Each of the nine record kinds at most once.
    ("observatory.v1.WatchChangesRequest.kinds", 9),
];

/// Nesting of groups in unknown fields the walker follows; prost itself stops at 100.
const MAX_DEPTH: usize = 100;

/// The prost codec, with the requests' repeated fields bounded before decoding.
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(PhantomData)
    }
}

/// Decodes `U`, a request's repeated fields checked first.
#[derive(Debug, Clone)]
pub struct BoundedDecoder<U>(PhantomData<U>);

impl<U: Message + Name + Default> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let schema = schema();
        let Some(root) = schema.request(U::PACKAGE, U::NAME) else {
            // A response, decoded by a client: as prost's own codec does.
            return U::decode(buf).map(Some).map_err(|e| Status::internal(e.to_string()));
        };
        use prost::bytes::Buf;
        if let Err(TooMany { path, max }) = schema.check(root, buf.chunk()) {
            return Err(too_many(&path, max));
        }
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed request message: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the field.
fn too_many(path: &str, max: usize) -> Status {
    use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
    let description = format!("must hold at most {max} items");
    let mut violation = FieldViolation::new(path, description.clone());
    violation.reason = "TOO_MANY".to_owned();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid request: {path}: {description}"),
        ErrorDetails::with_bad_request(vec![violation]),
    )
}

/// A repeated field over its maximum, by its path in the request (`off_label.axes`,
/// `declare_episode.off_label.axes` inside an import item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooMany {
    pub path: String,
    pub max: usize,
}

#[derive(Debug)]
struct Field {
    name: String,
    repeated: bool,
    /// Packable scalar (varint, fixed32 or fixed64 elements): a length-delimited occurrence
    /// holds many elements.
    packed: Option<Packed>,
    /// Index of the message type of a message field, to walk into.
    message: Option<usize>,
    /// Elements allowed, for a repeated field.
    max: usize,
}

#[derive(Debug, Clone, Copy)]
enum Packed {
    Varint,
    Fixed32,
    Fixed64,
}

#[derive(Debug, Default)]
struct MessageType {
    full_name: String,
    fields: HashMap<u32, Field>,
}

/// The contract's message types, and which of them are requests.
#[derive(Debug)]
pub struct Schema {
    types: Vec<MessageType>,
    /// `package.Name` of each RPC input, to its index.
    requests: HashMap<String, usize>,
    /// The same by package, then name: looked up on every decode without building a name.
    by_package: HashMap<String, HashMap<String, usize>>,
}

/// The schema of the contract, read once from its descriptor set.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let fds = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into this crate decodes");
        Schema::new(&fds)
    })
}

impl Schema {
    fn new(fds: &prost_types::FileDescriptorSet) -> Schema {
        use prost_types::field_descriptor_proto::{Label, Type};
        fn collect<'a>(
            prefix: &str,
            messages: &'a [prost_types::DescriptorProto],
            out: &mut Vec<(String, &'a prost_types::DescriptorProto)>,
        ) {
            for m in messages {
                let name = format!("{prefix}.{}", m.name());
                collect(&name, &m.nested_type, out);
                out.push((name, m));
            }
        }
        let mut all = Vec::new();
        for file in &fds.file {
            collect(file.package(), &file.message_type, &mut all);
        }
        let index: HashMap<String, usize> = all.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        let limits: HashMap<&str, usize> = MAX_ITEMS.iter().copied().collect();
        let types = all
            .iter()
            .map(|(full_name, m)| MessageType {
                full_name: full_name.clone(),
                fields: m
                    .field
                    .iter()
                    .map(|f| {
                        let repeated = f.label() == Label::Repeated;
                        let packed = match f.r#type() {
                            Type::String | Type::Bytes | Type::Message | Type::Group => None,
                            Type::Fixed32 | Type::Sfixed32 | Type::Float => Some(Packed::Fixed32),
                            Type::Fixed64 | Type::Sfixed64 | Type::Double => Some(Packed::Fixed64),
                            _ => Some(Packed::Varint),
                        };
                        let message = (f.r#type() == Type::Message)
                            .then(|| index.get(f.type_name().trim_start_matches('.')).copied())
                            .flatten();
                        let max = limits
                            .get(format!("{full_name}.{}", f.name()).as_str())
                            .copied()
                            .unwrap_or(usize::MAX);
                        (
                            u32::try_from(f.number()).unwrap_or(0),
                            Field {
                                name: f.name().to_owned(),
                                repeated,
                                packed: packed.filter(|_| repeated),
                                message,
                                max,
                            },
                        )
                    })
                    .collect(),
            })
            .collect();
        let requests: HashMap<String, usize> = fds
            .file
            .iter()
            .flat_map(|f| &f.service)
            .flat_map(|s| &s.method)
            .filter_map(|m| {
                let name = m.input_type().trim_start_matches('.');
                index.get(name).map(|i| (name.to_owned(), *i))
            })
            .collect();
        let mut by_package: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (full, i) in &requests {
            let (package, name) = full.rsplit_once('.').unwrap_or(("", full));
            by_package
                .entry(package.to_owned())
                .or_default()
                .insert(name.to_owned(), *i);
        }
        Schema {
            types,
            requests,
            by_package,
        }
    }

    /// The index of a request message type, by package and name.
    fn request(&self, package: &str, name: &str) -> Option<usize> {
        self.by_package.get(package)?.get(name).copied()
    }

    /// Repeated fields reachable from a request that have no maximum, as `package.Message.field`.
    pub fn unbounded_request_fields(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut stack: Vec<usize> = self.requests.values().copied().collect();
        let mut out = Vec::new();
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            let t = &self.types[i];
            for f in t.fields.values() {
                if f.repeated && f.max == usize::MAX {
                    out.push(format!("{}.{}", t.full_name, f.name));
                }
                stack.extend(f.message);
            }
        }
        out.sort();
        out
    }

    /// Checks the encoded request message `bytes` of type `root` (see [`Schema::request`]) without
    /// decoding it. Malformed bytes pass: prost refuses them next.
    pub fn check_request(&self, full_name: &str, bytes: &[u8]) -> Result<(), TooMany> {
        match self.requests.get(full_name) {
            Some(&root) => self.check(root, bytes),
            None => Ok(()),
        }
    }

    fn check(&self, root: usize, bytes: &[u8]) -> Result<(), TooMany> {
        self.walk(root, bytes, &mut String::new(), 0, &mut HashMap::new())
    }

    /// Walks one message. `counts` holds the elements seen per repeated field, by path: a
    /// message field that occurs several times is merged by decoding, so its occurrences share
    /// one path (and one count); elements of a repeated message have a path each (`[i]`).
    fn walk(
        &self,
        ty: usize,
        mut bytes: &[u8],
        path: &mut String,
        depth: usize,
        counts: &mut HashMap<String, usize>,
    ) -> Result<(), TooMany> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let fields = &self.types[ty].fields;
        while !bytes.is_empty() {
            let Some(key) = varint(&mut bytes) else { return Ok(()) };
            let (number, wire) = (u32::try_from(key >> 3).unwrap_or(0), key & 7);
            let field = fields.get(&number);
            let payload: &[u8] = match wire {
                0 => {
                    if varint(&mut bytes).is_none() {
                        return Ok(());
                    }
                    &[]
                }
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    if bytes.len() < n {
                        return Ok(());
                    }
                    bytes = &bytes[n..];
                    &[]
                }
                2 => {
                    let Some(len) = varint(&mut bytes).and_then(|l| usize::try_from(l).ok()) else {
                        return Ok(());
                    };
                    if bytes.len() < len {
                        return Ok(());
                    }
                    let (payload, rest) = bytes.split_at(len);
                    bytes = rest;
                    payload
                }
                3 => {
                    // A group (only in unknown fields here): skipped to its end.
                    match skip_group(bytes, number, depth + 1) {
                        Some(rest) => bytes = rest,
                        None => return Ok(()),
                    }
                    &[]
                }
                _ => return Ok(()),
            };
            let Some(field) = field else { continue };
            let index = if field.repeated {
                let elements = match (wire, field.packed) {
                    (2, Some(Packed::Varint)) => payload.iter().filter(|b| **b < 0x80).count(),
                    (2, Some(Packed::Fixed32)) => payload.len() / 4,
                    (2, Some(Packed::Fixed64)) => payload.len() / 8,
                    _ => 1,
                };
                let mut key = path.clone();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(&field.name);
                let count = counts.entry(key).or_insert(0);
                let before = *count;
                *count = before.saturating_add(elements);
                if *count > field.max {
                    let mut path = path.clone();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&field.name);
                    return Err(TooMany { path, max: field.max });
                }
                Some(before)
            } else {
                None
            };
            if let (2, Some(sub)) = (wire, field.message) {
                let mark = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&field.name);
                if let Some(i) = index {
                    path.push_str(&format!("[{i}]"));
                }
                self.walk(sub, payload, path, depth + 1, counts)?;
                path.truncate(mark);
            }
        }
        Ok(())
    }
}

/// Reads a varint, advancing `bytes`; `None` when malformed or cut short.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Skips a group's contents up to its end tag; `None` when malformed or nested too deep.
fn skip_group(mut bytes: &[u8], number: u32, depth: usize) -> Option<&[u8]> {
    if depth > MAX_DEPTH {
        return None;
    }
    loop {
        let key = varint(&mut bytes)?;
        let (n, wire) = (u32::try_from(key >> 3).ok()?, key & 7);
        match wire {
            0 => {
                varint(&mut bytes)?;
            }
            1 => bytes = bytes.get(8..)?,
            5 => bytes = bytes.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                bytes = bytes.get(len..)?;
            }
            3 => bytes = skip_group(bytes, n, depth + 1)?,
            4 if n == number => return Some(bytes),
            _ => return None,
        }
    }
}
