//! What profiling may use: one DataFusion memory pool shared by every table of every job in
//! the process (`--memory-limit`), and the longest line a CSV/NDJSON file may hold
//! (`--max-record-size`). A table that needs more fails alone, naming the option.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// Without `--memory-limit`: this share of the machine's (or container's) memory.
pub const DEFAULT_MEMORY_PERCENT: u8 = 50;
/// Without `--max-record-size`: the longest line of a CSV/NDJSON file.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 << 20;
/// When the machine's memory cannot be read.
const FALLBACK_MEMORY: usize = 4 << 30;

/// `--memory-limit`: bytes, or a share of the memory this process may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    Bytes(usize),
    Percent(u8),
}

impl Default for MemoryLimit {
    fn default() -> Self {
        Self::Percent(DEFAULT_MEMORY_PERCENT)
    }
}

impl std::str::FromStr for MemoryLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(Self::Percent(p)),
                _ => Err(format!(
                    "{s:?} is not a share of memory between 1% and 100%"
                )),
            },
            None => parse_size(s).map(Self::Bytes),
        }
    }
}

impl MemoryLimit {
    pub fn bytes(self) -> usize {
        match self {
            Self::Bytes(b) => b,
            Self::Percent(p) => {
                let total = available_memory().unwrap_or(FALLBACK_MEMORY);
                (total as u128 * p as u128 / 100) as usize
            }
        }
    }
}

/// A size as people write it: `1048576`, `512K`, `64M`, `1.5G`, `2GiB`, `100MB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let digits = upper
        .trim_end_matches("IB")
        .trim_end_matches('B')
        .trim_end();
    let (number, unit) = match digits.char_indices().next_back() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&digits[..i], Some(c)),
        _ => (digits, None),
    };
    let scale: u64 = match unit {
        None => 1,
        Some('K') => 1 << 10,
        Some('M') => 1 << 20,
        Some('G') => 1 << 30,
        Some('T') => 1 << 40,
        Some(_) => return Err(format!("{s:?}: the unit must be K, M, G or T")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * scale as f64 <= usize::MAX as f64 => {
            Ok((n * scale as f64) as usize)
        }
        _ => Err(format!(
            "{s:?} is not a size (e.g. 512M, 4G, or a number of bytes)"
        )),
    }
}

/// The memory this process may use: the container's limit (cgroup v2 or v1) when it has one,
/// else the machine's.
pub fn available_memory() -> Option<usize> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let machine = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m) as usize),
        (c, m) => c.or(m).map(|b| b as usize),
    }
}

/// The limits profiling runs under; clones share one memory pool.
#[derive(Debug, Clone)]
pub struct Limits {
    pool: Arc<dyn MemoryPool>,
    runtime: Arc<RuntimeEnv>,
    pub memory_bytes: usize,
    pub max_record_bytes: usize,
}

impl Limits {
    pub fn new(memory_bytes: usize, max_record_bytes: usize) -> Self {
        // Tracking names the biggest consumers in the error a table fails with.
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(memory_bytes),
            NonZeroUsize::new(3).expect("3 is not zero"),
        ));
        // No listing or file-statistics caches: a job reads each file once, so they only grow
        // (20 MB of statistics on a lake of 100,000 files), and the process's runtime outlives
        // a job (the server): a cached folder listing would hide the next job's new files.
        let caches = CacheManagerConfig::default()
            .with_list_files_cache_limit(0)
            .with_file_statistics_cache_limit(0);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .with_cache_manager(caches)
            .build_arc()
            .expect("a runtime with a memory pool and default disk settings builds");
        Self {
            pool,
            runtime,
            memory_bytes,
            max_record_bytes,
        }
    }

    /// The runtime every profiling session uses: its pool is this one.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    /// Bytes the pool has lent out now (every running table together).
    pub fn reserved(&self) -> usize {
        self.pool.reserved()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(MemoryLimit::default().bytes(), DEFAULT_MAX_RECORD_BYTES)
    }
}

/// Bytes the way a person reads them: `64.0 MiB`.
pub fn human_bytes(b: usize) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_shares_parse_as_written() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("100 MB"), Ok(100 << 20));
        for bad in ["", "0", "-1G", "4X", "G", "lots"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!("25%".parse(), Ok(MemoryLimit::Percent(25)));
        assert_eq!("4G".parse(), Ok(MemoryLimit::Bytes(4 << 30)));
        assert!("0%".parse::<MemoryLimit>().is_err());
        assert!("150%".parse::<MemoryLimit>().is_err());
        let half = MemoryLimit::Percent(50).bytes();
        let all = available_memory().unwrap();
        assert!(half > 0 && half <= all / 2 + 1, "{half} of {all}");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }
}
