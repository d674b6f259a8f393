//! The column sketch: one DataFusion aggregate (`nuvyn_profile`) that, in the same pass as
//! the counts, min/max and distinct counts, gathers per column the moments, zero and
//! negative counts, lengths and blanks, exact value counts while a column has few distinct
//! values, and a uniform random sample of its values. Quantiles, histograms, approximate top
//! values, semantic types and the shown sample values come from that sample. Every part
//! merges across scan partitions in any order with the same result (the sample is the
//! bottom-k of per-row random priorities), so a profile is the same on every run.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{HashMap, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};
use serde::{Deserialize, Serialize};

use super::semantic::{self, Semantic};

/// Values kept in each column's random sample.
pub const SAMPLE_SIZE: usize = 8192;
/// The stored form of a sketch ([`Sketch::to_bytes`]): part of the key a stored partition
/// state is merged by, so that states of another form are read again, not misread.
pub const STORED_FORM: &str = "postcard-1";
/// Distinct values counted exactly; a column with more gets approximate top values.
pub const EXACT_VALUES: usize = 2048;
/// Most frequent values reported.
pub const TOP_VALUES: usize = 10;
/// Equal-width histogram bins between the minimum and the maximum.
pub const HISTOGRAM_BINS: usize = 20;
/// The chance that a sample-based estimate is outside its stated bound.
pub const BOUND_FAILURE: f64 = 0.01;
/// A column is personal data when at least this share of its sampled values is.
pub const PII_SHARE: f64 = 0.1;
/// Text is counted and sampled by its first this-many bytes.
const KEY_BYTES: usize = 256;

/// The error bound of a share estimated from `n` uniform samples, holding for every
/// quantile rank and every value's frequency at once with probability 1 - [`BOUND_FAILURE`]
/// (Dvoretzky-Kiefer-Wolfowitz; one value's frequency is Hoeffding's bound, the same).
pub fn share_bound(n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    ((2.0 / BOUND_FAILURE).ln() / (2.0 * n as f64)).sqrt()
}

/// How a column's values are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Number,
    /// Dates and timestamps, measured in microseconds since the epoch.
    Date,
    Timestamp,
    Text,
    Binary,
    Boolean,
    /// Lists and maps: their lengths.
    List,
    Other,
}

impl Kind {
    pub fn of(dt: &DataType) -> Self {
        use DataType as T;
        match dt {
            T::Int8
            | T::Int16
            | T::Int32
            | T::Int64
            | T::UInt8
            | T::UInt16
            | T::UInt32
            | T::UInt64
            | T::Float16
            | T::Float32
            | T::Float64
            | T::Decimal32(..)
            | T::Decimal64(..)
            | T::Decimal128(..)
            | T::Decimal256(..) => Self::Number,
            T::Date32 | T::Date64 => Self::Date,
            T::Timestamp(..) => Self::Timestamp,
            T::Utf8 | T::LargeUtf8 | T::Utf8View => Self::Text,
            T::Binary | T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_) => Self::Binary,
            T::Boolean => Self::Boolean,
            T::List(_) | T::LargeList(_) | T::FixedSizeList(..) | T::Map(..) => Self::List,
            T::Dictionary(_, v) => Self::of(v),
            _ => Self::Other,
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Self::Number | Self::Date | Self::Timestamp)
    }
}

/// How a number column's values are written: as Arrow shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Written {
    #[default]
    Float,
    Integer,
    Decimal(i8),
}

impl Written {
    fn of(dt: &DataType) -> Self {
        use DataType as T;
        match dt {
            T::Int8
            | T::Int16
            | T::Int32
            | T::Int64
            | T::UInt8
            | T::UInt16
            | T::UInt32
            | T::UInt64 => Self::Integer,
            T::Decimal32(_, s) | T::Decimal64(_, s) | T::Decimal128(_, s) | T::Decimal256(_, s) => {
                Self::Decimal(*s)
            }
            T::Dictionary(_, v) => Self::of(v),
            _ => Self::Float,
        }
    }

    fn show(self, v: f64) -> String {
        match self {
            Self::Float => format!("{v:?}"),
            Self::Integer => format!("{}", v as i64),
            Self::Decimal(s) if s > 0 => format!("{v:.*}", s as usize),
            Self::Decimal(_) => format!("{v:.0}"),
        }
    }
}

/// A sampled value: text keeps its string, numbers their value (written when shown).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    p: f64,
    v: f64,
    s: String,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        self.p
            .total_cmp(&o.p)
            .then_with(|| self.v.total_cmp(&o.v))
            .then_with(|| self.s.cmp(&o.s))
    }
}

/// One column's sketch; what the aggregate's state carries between partitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sketch {
    kind: Kind,
    #[serde(default)]
    written: Written,
    /// Non-null values.
    count: u64,
    /// Numbers: finite values (NaN and infinities are counted here apart and left out of
    /// the moments, range and sample).
    finite: u64,
    mean: f64,
    m2: f64,
    min: Option<f64>,
    max: Option<f64>,
    zeros: u64,
    negatives: u64,
    trues: u64,
    min_len: Option<u64>,
    max_len: u64,
    sum_len: u64,
    blanks: u64,
    /// Exact counts per value while there are at most [`EXACT_VALUES`] of them.
    exact: Option<Vec<(String, u64)>>,
    /// The bottom-[`SAMPLE_SIZE`] values by priority.
    sample: Vec<Entry>,
    /// Set when the sample was trimmed ([`Sketch::keep_below`]): it holds only values of
    /// lower priority. A merge keeps only the values below every part's cut, so that parts
    /// trimmed at different times still give a uniform sample.
    cut: Option<f64>,
    #[serde(skip)]
    state: Option<Box<Live>>,
}

/// Uniform draws in (0, 1) that repeat: splitmix64 seeded by an FNV-1a hash of some bytes,
/// so the same data (or table name) gives the same draws on every run and machine.
#[derive(Debug, Clone, Default)]
pub struct Draws(u64);

impl Draws {
    pub fn seeded(bytes: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(h)
    }

    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// What only the accumulating side needs: the exact counts as a map, the sample's pool
/// (with the bytes its values hold), the random source and the number of values to skip
/// before the next sampled one.
#[derive(Debug, Clone)]
struct Live {
    exact: Option<HashMap<String, u64>>,
    exact_num: Option<HashMap<u64, u64>>,
    /// The sample and recent candidates: the bottom-[`SAMPLE_SIZE`] of it is the sample.
    /// Compacted when it doubles, so a candidate costs O(1), not a heap's O(log k).
    pool: Vec<Entry>,
    pool_bytes: usize,
    /// A priority at or above the sample's largest (1 until the sample is full).
    tau: f64,
    rng: Draws,
    seeded: bool,
    /// Mixed into the seed: sketches of parts that may hold the same values (the partitions
    /// of a table, merged later) must not draw the same priorities.
    salt: Vec<u8>,
    skip: Option<u64>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            exact: None,
            exact_num: None,
            pool: Vec::new(),
            pool_bytes: 0,
            tau: 1.0,
            rng: Draws::default(),
            seeded: false,
            salt: Vec::new(),
            skip: None,
        }
    }
}

impl Live {
    /// `tau` of a pool read back from a state.
    fn with_tau(mut self: Box<Self>) -> Box<Self> {
        self.tau = 1.0;
        self.compact();
        self
    }

    fn next_f64(&mut self) -> f64 {
        self.rng.next_f64()
    }

    fn seed(&mut self, bytes: &[u8]) {
        if !self.seeded {
            // Seeded by the partition's first value: partitions differ in their draws, and
            // the same data gives the same draws on every run.
            self.rng = if self.salt.is_empty() {
                Draws::seeded(bytes)
            } else {
                Draws::seeded(&[self.salt.as_slice(), b"\0", bytes].concat())
            };
            self.seeded = true;
        }
    }

    fn full(&self) -> bool {
        self.tau < 1.0
    }

    /// Adds an entry whose priority is below `tau`.
    fn push(&mut self, e: Entry) {
        self.pool_bytes += e.s.capacity();
        self.pool.push(e);
        if !self.full() && self.pool.len() == SAMPLE_SIZE {
            self.tau = self.pool.iter().map(|e| e.p).fold(0.0, f64::max);
        } else if self.pool.len() >= 2 * SAMPLE_SIZE {
            self.compact();
        }
    }

    /// Keeps the bottom-[`SAMPLE_SIZE`] entries; `tau` becomes the largest kept.
    fn compact(&mut self) {
        if self.pool.len() > SAMPLE_SIZE {
            self.pool.select_nth_unstable(SAMPLE_SIZE - 1);
            for e in self.pool.drain(SAMPLE_SIZE..) {
                self.pool_bytes -= e.s.capacity();
            }
        }
        if self.pool.len() == SAMPLE_SIZE {
            self.tau = self.pool.iter().map(|e| e.p).fold(0.0, f64::max);
        }
    }

    /// Values to pass over before the next one enters the full sample (Li's algorithm L
    /// in its priority form: the next priority below `tau` comes after a geometric number
    /// of values, and is uniform below `tau`).
    fn draw_skip(&mut self) -> u64 {
        let u = self.next_f64();
        (u.ln() / (-self.tau).ln_1p()).floor().min(u64::MAX as f64) as u64
    }

    fn accept(&mut self, v: f64, s: String) {
        let p = self.next_f64() * self.tau;
        self.push(Entry { p, v, s });
    }

    /// Offers one value to the sample; a skipped value costs a decrement.
    #[inline]
    fn offer(&mut self, v: f64, s: impl FnOnce() -> String) {
        if !self.full() {
            self.accept(v, s());
            return;
        }
        let skip = match self.skip {
            Some(k) => k,
            None => self.draw_skip(),
        };
        if skip > 0 {
            self.skip = Some(skip - 1);
            return;
        }
        self.accept(v, s());
        self.skip = None;
    }

    /// Offers `n` values at once, jumping over the skipped ones.
    fn offer_all(&mut self, n: usize, v: impl Fn(usize) -> f64, s: impl Fn(usize) -> String) {
        let mut i = 0;
        while i < n {
            if !self.full() {
                self.accept(v(i), s(i));
                i += 1;
                continue;
            }
            let skip = match self.skip.take() {
                Some(k) => k,
                None => self.draw_skip(),
            };
            let left = (n - i) as u64;
            if skip >= left {
                self.skip = Some(skip - left);
                return;
            }
            i += skip as usize;
            self.accept(v(i), s(i));
            i += 1;
        }
    }
}

fn cut(s: &str) -> &str {
    if s.len() <= KEY_BYTES {
        return s;
    }
    let mut end = KEY_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Sketch {
    /// A sketch of a column of type `dt`.
    pub fn for_type(dt: &DataType) -> Self {
        Self {
            written: Written::of(dt),
            ..Self::new(Kind::of(dt))
        }
    }

    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            written: Written::Float,
            count: 0,
            finite: 0,
            mean: 0.0,
            m2: 0.0,
            min: None,
            max: None,
            zeros: 0,
            negatives: 0,
            trues: 0,
            min_len: None,
            max_len: 0,
            sum_len: 0,
            blanks: 0,
            exact: None,
            sample: Vec::new(),
            cut: None,
            state: Some(Box::new(Live {
                exact: (kind == Kind::Text).then(HashMap::new),
                exact_num: kind.numeric().then(HashMap::new),
                ..Live::default()
            })),
        }
    }

    /// A sketch whose random draws also depend on `salt` (see [`ProfileAggregate`]).
    pub fn salted(mut self, salt: &[u8]) -> Self {
        self.live().salt = salt.to_vec();
        self
    }

    fn live(&mut self) -> &mut Live {
        self.state.get_or_insert_with(|| {
            // A sketch read back from a state: its parts become live again.
            let pool = std::mem::take(&mut self.sample);
            let pool_bytes = pool.iter().map(|e| e.s.capacity()).sum();
            let (exact, exact_num) = match self.exact.take() {
                None => (None, None),
                Some(pairs) if self.kind.numeric() => (
                    None,
                    Some(
                        pairs
                            .into_iter()
                            .filter_map(|(k, n)| Some((k.parse::<u64>().ok()?, n)))
                            .collect(),
                    ),
                ),
                Some(pairs) => (Some(pairs.into_iter().collect()), None),
            };
            Box::new(Live {
                exact,
                exact_num,
                pool,
                pool_bytes,
                ..Live::default()
            })
            .with_tau()
        })
    }

    /// The sketch's parts in their stored form (sample sorted by priority).
    fn settle(&mut self) {
        if let Some(live) = self.state.take() {
            let mut live = *live;
            live.compact();
            let mut sample = live.pool;
            sample.sort();
            self.sample = sample;
            self.exact = if let Some(m) = live.exact {
                Some(m.into_iter().collect())
            } else {
                live.exact_num
                    .map(|m| m.into_iter().map(|(k, n)| (k.to_string(), n)).collect())
            };
        }
    }

    fn push_len(&mut self, len: u64) {
        self.min_len = Some(self.min_len.map_or(len, |m| m.min(len)));
        self.max_len = self.max_len.max(len);
        self.sum_len += len;
    }

    /// Folds another set's moments into these (Chan et al.'s parallel formula).
    fn add_moments(&mut self, n: u64, mean: f64, m2: f64) {
        if n == 0 {
            return;
        }
        let total = self.finite + n;
        let d = mean - self.mean;
        self.mean += d * n as f64 / total as f64;
        self.m2 += m2 + d * d * self.finite as f64 * n as f64 / total as f64;
        self.finite = total;
    }

    /// Numbers of one batch: `vals` with their validity.
    fn push_numbers(
        &mut self,
        live: &mut Live,
        vals: &[f64],
        valid: Option<&datafusion::arrow::buffer::NullBuffer>,
    ) {
        let usable = |i: usize| valid.is_none_or(|n| n.is_valid(i)) && vals[i].is_finite();
        let all = valid.is_none() && vals.iter().all(|v| v.is_finite());
        self.count += (vals.len() - valid.map_or(0, |n| n.null_count())) as u64;
        // The moments, range and signs in two tight passes over the batch.
        let (mut n, mut sum, mut lo, mut hi, mut zeros, mut negatives) =
            (0u64, 0.0f64, f64::INFINITY, f64::NEG_INFINITY, 0u64, 0u64);
        let mut add = |v: f64| {
            n += 1;
            sum += v;
            lo = lo.min(v);
            hi = hi.max(v);
            zeros += (v == 0.0) as u64;
            negatives += (v < 0.0) as u64;
        };
        if all {
            vals.iter().for_each(|v| add(*v));
        } else {
            (0..vals.len())
                .filter(|i| usable(*i))
                .for_each(|i| add(vals[i]));
        }
        if n == 0 {
            return;
        }
        let mean = sum / n as f64;
        let m2: f64 = if all {
            vals.iter().map(|v| (v - mean) * (v - mean)).sum()
        } else {
            (0..vals.len())
                .filter(|i| usable(*i))
                .map(|i| (vals[i] - mean) * (vals[i] - mean))
                .sum()
        };
        self.add_moments(n, mean, m2);
        self.min = Some(self.min.map_or(lo, |m| m.min(lo)));
        self.max = Some(self.max.map_or(hi, |m| m.max(hi)));
        self.zeros += zeros;
        self.negatives += negatives;
        if let Some(m) = &mut live.exact_num {
            for i in (0..vals.len()).filter(|i| all || usable(*i)) {
                *m.entry(vals[i].to_bits()).or_insert(0) += 1;
            }
            if m.len() > EXACT_VALUES {
                live.exact_num = None;
            }
        }
        if all {
            live.seed(&vals[0].to_bits().to_le_bytes());
            live.offer_all(vals.len(), |i| vals[i], |_| String::new());
        } else {
            for i in (0..vals.len()).filter(|i| usable(*i)) {
                live.seed(&vals[i].to_bits().to_le_bytes());
                live.offer(vals[i], String::new);
            }
        }
    }

    fn push_text(&mut self, live: &mut Live, s: &str, chars: u64) {
        self.count += 1;
        self.push_len(chars);
        if s.chars().all(char::is_whitespace) {
            self.blanks += 1;
        }
        let key = cut(s);
        if key.len() < s.len() {
            // Values told apart only after their first bytes: no exact counts.
            live.exact = None;
        }
        if let Some(m) = &mut live.exact {
            match m.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    m.insert(key.to_string(), 1);
                    if m.len() > EXACT_VALUES {
                        live.exact = None;
                    }
                }
            }
        }
        live.seed(key.as_bytes());
        live.offer(0.0, || key.to_string());
    }

    pub fn update(&mut self, a: &ArrayRef) -> Result<()> {
        self.live();
        let mut live = self.state.take().expect("live");
        let r = self.update_with(&mut live, a);
        self.state = Some(live);
        r
    }

    fn update_with(&mut self, live: &mut Live, a: &ArrayRef) -> Result<()> {
        use DataType as T;
        match self.kind {
            Kind::Number => {
                let f = datafusion::arrow::compute::cast(a, &T::Float64)?;
                let f = f.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
                self.push_numbers(live, f.values(), f.nulls());
            }
            Kind::Date | Kind::Timestamp => {
                let f = datafusion::arrow::array::Float64Array::from(temporal_micros(a)?);
                self.push_numbers(live, f.values(), f.nulls());
            }
            Kind::Text => match a.data_type() {
                T::Utf8 => {
                    let s = a.as_string::<i32>();
                    let ascii = s.values().is_ascii();
                    for v in s.iter().flatten() {
                        self.push_text(live, v, text_len(v, ascii));
                    }
                }
                T::LargeUtf8 => {
                    let s = a.as_string::<i64>();
                    let ascii = s.values().is_ascii();
                    for v in s.iter().flatten() {
                        self.push_text(live, v, text_len(v, ascii));
                    }
                }
                T::Utf8View => {
                    for v in a.as_string_view().iter().flatten() {
                        self.push_text(live, v, text_len(v, v.is_ascii()));
                    }
                }
                _ => {
                    let s = datafusion::arrow::compute::cast(a, &T::Utf8)?;
                    return self.update_with(live, &s);
                }
            },
            Kind::Binary => {
                let b = datafusion::arrow::compute::cast(a, &T::LargeBinary)?;
                let b = b.as_binary::<i64>();
                for v in b.iter().flatten() {
                    self.count += 1;
                    self.push_len(v.len() as u64);
                }
            }
            Kind::Boolean => {
                // Dictionary-encoded booleans are decoded first.
                let a = datafusion::arrow::compute::cast(a, &T::Boolean)?;
                let b = a.as_boolean();
                self.count += (b.len() - b.null_count()) as u64;
                self.trues += b.true_count() as u64;
            }
            Kind::List => {
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        self.count += 1;
                        let n = match a.data_type() {
                            T::List(_) => a.as_list::<i32>().value_length(i) as u64,
                            T::LargeList(_) => a.as_list::<i64>().value_length(i) as u64,
                            T::FixedSizeList(_, n) => *n as u64,
                            T::Map(..) => a.as_map().value_length(i) as u64,
                            _ => 0,
                        };
                        self.push_len(n);
                    }
                }
            }
            Kind::Other => self.count += (a.len() - a.null_count()) as u64,
        }
        Ok(())
    }

    pub fn merge(&mut self, mut o: Sketch) {
        self.count += o.count;
        self.add_moments(o.finite, o.mean, o.m2);
        let pick = |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        self.min = pick(self.min, o.min, f64::min);
        self.max = pick(self.max, o.max, f64::max);
        self.zeros += o.zeros;
        self.negatives += o.negatives;
        self.trues += o.trues;
        self.min_len = match (self.min_len, o.min_len) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_len = self.max_len.max(o.max_len);
        self.sum_len += o.sum_len;
        self.blanks += o.blanks;
        o.settle();
        let cut = match (self.cut, o.cut) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let cut_moved = cut.is_some() && cut != self.cut;
        self.cut = cut;
        let live = self.live();
        match (&mut live.exact, &mut live.exact_num, o.exact) {
            (Some(m), _, Some(pairs)) => {
                for (k, n) in pairs {
                    *m.entry(k).or_insert(0) += n;
                }
                if m.len() > EXACT_VALUES {
                    live.exact = None;
                }
            }
            (_, Some(m), Some(pairs)) => {
                for (k, n) in pairs {
                    if let Ok(k) = k.parse::<u64>() {
                        *m.entry(k).or_insert(0) += n;
                    }
                }
                if m.len() > EXACT_VALUES {
                    live.exact_num = None;
                }
            }
            _ => {
                live.exact = None;
                live.exact_num = None;
            }
        }
        // The union's bottom-k below every part's cut: the same whichever order partitions
        // arrive in.
        let below = cut.unwrap_or(f64::INFINITY);
        for e in o.sample {
            if e.p < live.tau && e.p < below {
                live.push(e);
            }
        }
        if cut_moved {
            live.pool.retain(|e| e.p < below);
            live.pool_bytes = live.pool.iter().map(|e| e.s.capacity()).sum();
            if live.pool.len() < SAMPLE_SIZE {
                live.tau = 1.0;
            }
        }
        live.compact();
        live.skip = None;
    }

    /// The stored form: postcard (a compact serde encoding). A re-run decodes every stored
    /// partition's sketches several times, and JSON took most of its merge time.
    pub fn to_bytes(&mut self) -> Vec<u8> {
        self.settle();
        postcard::to_allocvec(self).expect("a sketch serialises")
    }

    /// The priorities of the sampled values (each uniform in (0, 1)).
    pub fn priorities(&mut self) -> Vec<f64> {
        self.settle();
        self.sample.iter().map(|e| e.p).collect()
    }

    /// Drops the sampled values of priority `tau` or above. With `tau` the largest priority
    /// of the bottom-[`SAMPLE_SIZE`] of several sketches' samples together, what is dropped
    /// is in no merge of them (or of them and more) again; a merge without some of them
    /// keeps a smaller uniform sample (every value with priority below `tau`).
    pub fn keep_below(&mut self, tau: f64) {
        self.settle();
        self.sample.retain(|e| e.p < tau);
        self.cut = Some(self.cut.map_or(tau, |c| c.min(tau)));
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        postcard::from_bytes(b)
            .map_err(|e| DataFusionError::Internal(format!("bad profile sketch: {e}")))
    }

    fn bytes_used(&self) -> usize {
        let strings: usize = self.sample.iter().map(|e| e.s.capacity()).sum();
        let live = self.state.as_ref().map_or(0, |l| {
            l.pool.capacity() * 48
                + l.pool_bytes
                + l.exact.as_ref().map_or(0, |m| m.len() * 72)
                + l.exact_num.as_ref().map_or(0, |m| m.len() * 24)
        });
        std::mem::size_of::<Self>() + self.sample.len() * 48 + strings + live
    }
}

fn text_len(s: &str, ascii: bool) -> u64 {
    if ascii {
        s.len() as u64
    } else {
        s.chars().count() as u64
    }
}

/// Microseconds since the epoch of each date or timestamp.
fn temporal_micros(a: &ArrayRef) -> Result<Vec<Option<f64>>> {
    let micros =
        datafusion::arrow::compute::cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(micros
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .map(|v| v.map(|v| v as f64))
        .collect())
}

/// The `nuvyn_profile` aggregate: its value is the column's [`Sketch`], serialised.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProfileAggregate {
    signature: Signature,
}

impl ProfileAggregate {
    /// `nuvyn_profile(column)`, or `nuvyn_profile(column, salt)` with a text literal mixed
    /// into the sample's random draws: the partitions of a table are sketched apart and
    /// merged later, and partitions that begin with the same values would otherwise draw
    /// the same priorities and sample the same rows of each.
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        })
    }
}

impl AggregateUDFImpl for ProfileAggregate {
    fn name(&self) -> &str {
        "nuvyn_profile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let dt = args.expr_fields[0].data_type();
        let mut sketch = Sketch::for_type(dt);
        if let Some(e) = args.exprs.get(1) {
            use datafusion::physical_expr::expressions::Literal;
            match e.downcast_ref::<Literal>().map(|l| l.value()) {
                Some(ScalarValue::Utf8(Some(salt))) => sketch = sketch.salted(salt.as_bytes()),
                _ => {
                    return Err(DataFusionError::Plan(
                        "nuvyn_profile's second argument must be a text literal".into(),
                    ));
                }
            }
        }
        Ok(Box::new(SketchAccumulator(sketch, Vec::new())))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

/// Partial sketches arrive in whatever order partitions finish; they are merged in an order
/// of their own (floating-point sums depend on it), so results are the same on every run.
#[derive(Debug)]
struct SketchAccumulator(Sketch, Vec<Sketch>);

impl SketchAccumulator {
    fn merge_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.1);
        pending.sort_by(|a, b| {
            a.count
                .cmp(&b.count)
                .then(a.mean.total_cmp(&b.mean))
                .then(a.m2.total_cmp(&b.m2))
                .then(a.sum_len.cmp(&b.sum_len))
        });
        for s in pending {
            self.0.merge(s);
        }
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0.update(&values[0])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.merge_pending();
        Ok(ScalarValue::Binary(Some(self.0.to_bytes())))
    }

    fn size(&self) -> usize {
        self.0.bytes_used() + self.1.iter().map(Sketch::bytes_used).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let b: &BinaryArray = states[0].as_binary::<i32>();
        for s in b.iter().flatten() {
            self.1.push(Sketch::from_bytes(s)?);
        }
        Ok(())
    }
}

/// What a column's sketch says, ready to store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub mean: Option<f64>,
    pub stddev: Option<f64>,
    pub min_double: Option<f64>,
    pub max_double: Option<f64>,
    /// Microseconds since the epoch.
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    pub quantiles: Option<serde_json::Value>,
    pub histogram: Option<serde_json::Value>,
    pub zero_count: Option<i64>,
    pub negative_count: Option<i64>,
    pub min_length: Option<i64>,
    pub avg_length: Option<f64>,
    pub max_length: Option<i64>,
    pub blank_count: Option<i64>,
    pub top_values: Vec<(String, i64)>,
    /// How far a reported count may be from the true one (0: exact).
    pub top_values_error: Option<i64>,
    /// The distinct count, when few enough values were counted exactly.
    pub exact_distinct: Option<i64>,
    /// No value occurs twice in the random sample.
    pub sample_unique: bool,
    pub semantic_type: Option<&'static str>,
    pub semantic_fraction: Option<f64>,
    pub personal: bool,
    /// Up to `n` distinct values of the sample, in its random order.
    pub sample_values: Vec<String>,
}

impl Summary {
    /// Counts of a sample of `read` rows made estimates for a table of `rows`: multiplied by
    /// `scale`, and the top values' error widened by the sample's own (Hoeffding's bound on
    /// `read` rows, the rows read in blocks taken as independent).
    pub fn scale(&mut self, scale: f64, read: i64, rows: i64) {
        let up = |n: &mut Option<i64>| *n = n.map(|v| (v as f64 * scale).round() as i64);
        up(&mut self.zero_count);
        up(&mut self.negative_count);
        up(&mut self.blank_count);
        for (_, c) in &mut self.top_values {
            *c = (*c as f64 * scale).round() as i64;
        }
        if let Some(e) = self.top_values_error {
            let sampling = (share_bound(read.max(1) as usize) * rows as f64).ceil() as i64;
            self.top_values_error = Some((e as f64 * scale).round() as i64 + sampling);
        }
        if let Some(counts) = self
            .histogram
            .as_mut()
            .and_then(|h| h.get_mut("counts"))
            .and_then(|c| c.as_array_mut())
        {
            for c in counts {
                if let Some(n) = c.as_u64() {
                    *c = ((n as f64 * scale).round() as u64).into();
                }
            }
        }
        if let Some(h) = self.histogram.as_mut() {
            h["exact"] = false.into();
        }
        if let Some(q) = self.quantiles.as_mut() {
            q["exact"] = false.into();
        }
        // A sample's distinct values are a lower bound, not a count.
        self.exact_distinct = None;
    }
}

fn shown_temporal(kind: Kind, micros: f64) -> serde_json::Value {
    let t = chrono::DateTime::from_timestamp_micros(micros.round() as i64);
    match (kind, t) {
        (Kind::Date, Some(t)) => t.format("%Y-%m-%d").to_string().into(),
        (_, Some(t)) => t.format("%Y-%m-%dT%H:%M:%S%.f").to_string().into(),
        (_, None) => serde_json::Value::Null,
    }
}

impl Sketch {
    fn shown(&self, v: f64) -> serde_json::Value {
        match self.kind {
            Kind::Date | Kind::Timestamp => shown_temporal(self.kind, v),
            _ => serde_json::json!(v),
        }
    }

    /// A value as text, as Arrow writes the column's type.
    fn written(&self, v: f64) -> String {
        match self.shown(v) {
            serde_json::Value::String(s) => s,
            _ => self.written.show(v),
        }
    }

    /// An entry's value as shown.
    fn entry_text(&self, e: &Entry) -> String {
        if self.kind.numeric() {
            self.written(e.v)
        } else {
            e.s.clone()
        }
    }

    /// The stored statistics. `sample_values` distinct values are shown.
    pub fn summary(mut self, sample_values: usize) -> Summary {
        self.settle();
        let mut out = Summary::default();
        let kind = self.kind;
        if kind == Kind::Number && self.finite > 0 {
            out.mean = Some(self.mean);
            out.stddev = (self.finite > 1).then(|| (self.m2 / (self.finite - 1) as f64).sqrt());
            out.min_double = self.min;
            out.max_double = self.max;
            out.zero_count = Some(self.zeros as i64);
            out.negative_count = Some(self.negatives as i64);
        }
        if matches!(kind, Kind::Date | Kind::Timestamp) {
            out.min_timestamp = self.min.map(|m| m.round() as i64);
            out.max_timestamp = self.max.map(|m| m.round() as i64);
        }
        if matches!(kind, Kind::Text | Kind::Binary | Kind::List) && self.count > 0 {
            out.min_length = self.min_len.map(|v| v as i64);
            out.max_length = Some(self.max_len as i64);
            out.avg_length = Some(self.sum_len as f64 / self.count as f64);
        }
        if kind == Kind::Text {
            out.blank_count = Some(self.blanks as i64);
        }
        let n = self.sample.len();
        if kind.numeric() && n > 0 {
            let mut vals: Vec<f64> = self.sample.iter().map(|e| e.v).collect();
            vals.sort_by(f64::total_cmp);
            let q = |p: f64| vals[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
            out.quantiles = Some(serde_json::json!({
                "p05": self.shown(q(0.05)), "p25": self.shown(q(0.25)), "p50": self.shown(q(0.50)),
                "p75": self.shown(q(0.75)), "p95": self.shown(q(0.95)),
                "exact": n as u64 == self.finite,
            }));
            if let (Some(lo), Some(hi)) = (self.min, self.max) {
                let bins = if hi > lo { HISTOGRAM_BINS } else { 1 };
                let width = (hi - lo) / bins as f64;
                let mut counts = vec![0u64; bins];
                for v in &vals {
                    let b = if width > 0.0 {
                        (((v - lo) / width) as usize).min(bins - 1)
                    } else {
                        0
                    };
                    counts[b] += 1;
                }
                let scale = self.finite as f64 / n as f64;
                let edges: Vec<serde_json::Value> = (0..=bins)
                    .map(|i| self.shown(lo + (hi - lo) * i as f64 / bins as f64))
                    .collect();
                out.histogram = Some(serde_json::json!({
                    "edges": edges,
                    "counts": counts.iter().map(|c| (*c as f64 * scale).round() as u64).collect::<Vec<_>>(),
                    "exact": n as u64 == self.finite,
                }));
            }
        }
        // Most frequent values: exact counts while there were few distinct values, else
        // estimated from the sample, keeping only values whose share exceeds the bound.
        let top: Option<Vec<(String, i64)>> = match (&self.exact, kind) {
            (_, Kind::Boolean) if self.count > 0 => {
                out.top_values_error = Some(0);
                let mut v = vec![
                    ("true".to_string(), self.trues as i64),
                    ("false".to_string(), (self.count - self.trues) as i64),
                ];
                v.retain(|(_, c)| *c > 0);
                Some(v)
            }
            (Some(pairs), _) => {
                out.top_values_error = Some(0);
                Some(
                    pairs
                        .iter()
                        .map(|(k, c)| {
                            let shown = if kind.numeric() {
                                self.written(f64::from_bits(k.parse::<u64>().unwrap_or(0)))
                            } else {
                                k.clone()
                            };
                            (shown, *c as i64)
                        })
                        .collect(),
                )
            }
            (None, Kind::Text | Kind::Number | Kind::Date | Kind::Timestamp) if n > 0 => {
                let total = if kind == Kind::Text {
                    self.count
                } else {
                    self.finite
                };
                let eps = share_bound(n);
                out.top_values_error = Some((eps * total as f64).ceil() as i64);
                let mut counts: HashMap<String, u64> = HashMap::new();
                for e in &self.sample {
                    *counts.entry(self.entry_text(e)).or_insert(0) += 1;
                }
                Some(
                    counts
                        .into_iter()
                        .filter(|(_, c)| *c as f64 / n as f64 > eps)
                        .map(|(s, c)| (s, (c as f64 * total as f64 / n as f64).round() as i64))
                        .collect(),
                )
            }
            _ => None,
        };
        out.sample_unique = {
            let mut seen = datafusion::common::HashSet::new();
            self.sample.iter().all(|e| {
                if kind.numeric() {
                    seen.insert(e.v.to_bits().to_string())
                } else {
                    seen.insert(e.s.clone())
                }
            })
        };
        out.exact_distinct = match (&self.exact, kind) {
            (_, Kind::Boolean) => Some((self.trues > 0) as i64 + (self.count > self.trues) as i64),
            (Some(pairs), _) => Some(pairs.len() as i64),
            _ => None,
        };
        if let Some(mut top) = top {
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(TOP_VALUES);
            out.top_values = top;
        }
        if kind == Kind::Text {
            let mut by_type: HashMap<Semantic, u64> = HashMap::new();
            let mut classified = 0u64;
            for e in &self.sample {
                if let Some(t) = semantic::classify(&e.s) {
                    *by_type.entry(t).or_insert(0) += 1;
                    classified += 1;
                }
            }
            if classified > 0 {
                let (best, n_best) = Semantic::ALL
                    .iter()
                    .map(|t| (*t, by_type.get(t).copied().unwrap_or(0)))
                    .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                    .expect("types");
                out.semantic_type = Some(best.as_str());
                out.semantic_fraction = Some(n_best as f64 / classified as f64);
                let personal: u64 = by_type
                    .iter()
                    .filter(|(t, _)| t.is_personal())
                    .map(|(_, n)| *n)
                    .sum();
                out.personal = personal as f64 / classified as f64 >= PII_SHARE;
            }
        }
        if kind == Kind::Boolean {
            out.sample_values = out.top_values.iter().map(|(v, _)| v.clone()).collect();
        } else {
            for e in &self.sample {
                if out.sample_values.len() >= sample_values {
                    break;
                }
                let v = super::cut(&self.entry_text(e));
                if !v.is_empty() && !out.sample_values.contains(&v) {
                    out.sample_values.push(v);
                }
            }
        }
        out
    }

    /// Values in the sample of a text column, for checks that need them.
    pub fn sampled(&self) -> usize {
        self.sample.len() + self.state.as_ref().map_or(0, |l| l.pool.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};

    fn sketch_of(arrays: &[ArrayRef]) -> Sketch {
        let mut s = Sketch::for_type(arrays[0].data_type());
        for a in arrays {
            s.update(a).unwrap();
        }
        s
    }

    #[test]
    fn small_columns_are_exact() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(3),
            None,
            Some(-1),
            Some(0),
            Some(3),
            Some(10),
        ]));
        let s = sketch_of(&[a]).summary(5);
        assert_eq!(s.mean, Some(3.0));
        assert_eq!(s.min_double, Some(-1.0));
        assert_eq!(s.max_double, Some(10.0));
        assert_eq!((s.zero_count, s.negative_count), (Some(1), Some(1)));
        assert!((s.stddev.unwrap() - (74.0f64 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.top_values[0], ("3".to_string(), 2));
        assert_eq!(s.top_values_error, Some(0));
        let q = s.quantiles.unwrap();
        assert_eq!(q["p50"], 3.0);
        assert_eq!(q["p05"], -1.0);
        assert_eq!(q["exact"], true);
        let h = s.histogram.unwrap();
        assert_eq!(h["counts"].as_array().unwrap().len(), HISTOGRAM_BINS);
        assert_eq!(h["counts"][0], 1);
        assert_eq!(h["counts"][19], 1);
    }

    /// Big columns: the sample's quantiles are within the stated rank bound, merging in
    /// either order gives the same sketch, and a uniform column has no top values.
    #[test]
    fn sketches_merge_in_any_order_within_bounds() {
        let n = 200_000i64;
        let part = |lo: i64, hi: i64| -> ArrayRef {
            Arc::new(Float64Array::from(
                (lo..hi)
                    .map(|i| ((i * 7919) % n) as f64)
                    .collect::<Vec<_>>(),
            ))
        };
        let a = sketch_of(&[part(0, n / 2)]);
        let b = sketch_of(&[part(n / 2, n)]);
        let merged = |first: &Sketch, second: &Sketch| {
            let mut acc = SketchAccumulator(Sketch::new(Kind::Number), Vec::new());
            for s in [first, second] {
                let state: ArrayRef =
                    Arc::new(BinaryArray::from(vec![s.clone().to_bytes().as_slice()]));
                acc.merge_batch(&[state]).unwrap();
            }
            let ScalarValue::Binary(Some(b)) = acc.evaluate().unwrap() else {
                panic!("a sketch")
            };
            Sketch::from_bytes(&b).unwrap().summary(5)
        };
        let (ab, ba) = (merged(&a, &b), merged(&b, &a));
        assert_eq!(ab, ba);
        let eps = share_bound(SAMPLE_SIZE);
        for (k, p) in [
            ("p05", 0.05),
            ("p25", 0.25),
            ("p50", 0.5),
            ("p75", 0.75),
            ("p95", 0.95),
        ] {
            let got = ab.quantiles.as_ref().unwrap()[k].as_f64().unwrap() / n as f64;
            assert!((got - p).abs() <= eps, "{k}: {got} vs {p} ± {eps}");
        }
        assert_eq!(ab.quantiles.unwrap()["exact"], false);
        assert!(ab.top_values.is_empty());
        assert_eq!(ab.sample_values.len(), 5);
        assert!((ab.mean.unwrap() - (n - 1) as f64 / 2.0).abs() < 1e-6);
    }

    /// A sample trimmed when its partition was stored keeps its cut through the stored
    /// form, and a merge keeps only values below every part's cut: parts trimmed at
    /// different times still give a uniform sample (all values under one priority).
    #[test]
    fn merges_keep_values_below_every_cut() {
        let part = |lo: i64, hi: i64| -> ArrayRef {
            Arc::new(Float64Array::from(
                (lo..hi).map(|i| i as f64).collect::<Vec<_>>(),
            ))
        };
        let mut a = sketch_of(&[part(0, 50_000)]).salted(b"a");
        a.update(&part(50_000, 60_000)).unwrap();
        let mut b = sketch_of(&[part(60_000, 120_000)]).salted(b"b");
        let full = a.priorities().len();
        assert_eq!(full, SAMPLE_SIZE);
        let cut = {
            let mut p = a.priorities();
            p.sort_by(f64::total_cmp);
            p[SAMPLE_SIZE / 4]
        };
        a.keep_below(cut);
        let mut a = Sketch::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(a.priorities().len(), SAMPLE_SIZE / 4);
        assert_eq!(a.cut, Some(cut));
        let b_below = b.priorities().iter().filter(|p| **p < cut).count();
        assert!(b_below > 0 && b_below < SAMPLE_SIZE, "{b_below}");
        for (first, second) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
            let mut m = first;
            m.merge(second);
            let p = m.priorities();
            assert!(p.iter().all(|p| *p < cut));
            assert_eq!(p.len(), SAMPLE_SIZE / 4 + b_below);
            assert_eq!(m.cut, Some(cut));
            assert_eq!(m.count, 120_000);
        }
    }

    #[test]
    fn text_columns_get_lengths_types_and_frequent_values() {
        let mut vals: Vec<Option<String>> = (0..30_000)
            .map(|i| Some(format!("user{i}@example.com")))
            .collect();
        vals.extend((0..10_000).map(|_| Some("a@b.io".to_string())));
        vals.push(Some("   ".into()));
        vals.push(None);
        let a: ArrayRef = Arc::new(StringArray::from(vals));
        let s = sketch_of(&[a]).summary(5);
        assert_eq!(s.semantic_type, Some("email"));
        assert!(s.personal);
        assert!(s.semantic_fraction.unwrap() > 0.99);
        assert_eq!(s.blank_count, Some(1));
        assert_eq!(s.min_length, Some(3));
        assert_eq!(s.max_length, Some("user29999@example.com".len() as i64));
        // Too many distinct values to count exactly: the frequent one is estimated.
        let (v, c) = &s.top_values[0];
        assert_eq!(v, "a@b.io");
        let err = s.top_values_error.unwrap();
        assert!((c - 10_000).abs() <= err, "{c} ± {err}");
        assert_eq!(s.top_values.len(), 1);
    }

    #[test]
    fn lists_get_lengths_and_booleans_exact_counts() {
        use datafusion::arrow::array::{BooleanArray, ListArray};
        use datafusion::arrow::datatypes::Int32Type;
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2), Some(3)]),
            None,
            Some(vec![]),
            Some(vec![Some(4)]),
        ]));
        let s = sketch_of(&[lists]).summary(5);
        assert_eq!((s.min_length, s.max_length), (Some(0), Some(3)));
        assert!((s.avg_length.unwrap() - 4.0 / 3.0).abs() < 1e-12);
        assert!(s.top_values.is_empty() && s.quantiles.is_none());
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
            Some(true),
        ]));
        let s = sketch_of(&[bools]).summary(5);
        assert_eq!(
            s.top_values,
            [("true".to_string(), 2), ("false".to_string(), 1)]
        );
        assert_eq!(s.exact_distinct, Some(2));
        assert_eq!(s.sample_values, ["true", "false"]);
    }

    #[test]
    fn dictionary_encoded_columns_are_read_as_their_values() {
        use datafusion::arrow::array::{DictionaryArray, Int32Array};
        use datafusion::arrow::datatypes::Int8Type;
        let keys = datafusion::arrow::array::Int8Array::from(vec![0, 1, 0, 0]);
        let text: ArrayRef = Arc::new(
            DictionaryArray::<Int8Type>::try_new(
                keys.clone(),
                Arc::new(StringArray::from(vec!["a", "bb"])),
            )
            .unwrap(),
        );
        let s = sketch_of(&[text]).summary(5);
        assert_eq!(s.top_values[0], ("a".to_string(), 3));
        assert_eq!((s.min_length, s.max_length), (Some(1), Some(2)));
        let nums: ArrayRef = Arc::new(
            DictionaryArray::<Int8Type>::try_new(
                keys.clone(),
                Arc::new(Int32Array::from(vec![7, 9])),
            )
            .unwrap(),
        );
        let s = sketch_of(&[nums]).summary(5);
        assert_eq!(s.mean, Some(7.5));
        assert_eq!(s.top_values[0], ("7".to_string(), 3));
        let bools: ArrayRef = Arc::new(
            DictionaryArray::<Int8Type>::try_new(
                keys,
                Arc::new(BooleanArray::from(vec![true, false])),
            )
            .unwrap(),
        );
        let s = sketch_of(&[bools]).summary(5);
        assert_eq!(
            s.top_values,
            [("true".to_string(), 3), ("false".to_string(), 1)]
        );
    }
}
