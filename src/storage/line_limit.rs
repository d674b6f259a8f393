//! The store wrapper that bounds the longest line of a text file as it is read: a CSV or
//! NDJSON reader holds a whole record in memory, so one multi-gigabyte line (a gzip of a few
//! megabytes can inflate to one) must fail its file before it is held, not after.
//!
//! Text readers decompress inside DataFusion, after the store; to see the lines they will see,
//! compressed bodies are decompressed a second time here, by streaming decoders that keep
//! nothing but a line length. That costs CPU on compressed text files only; the bytes handed on
//! are the store's own.

use std::fmt;
use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// How a text file's bytes are encoded, as its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCodec {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// Which files are text, and how encoded; `None`: not a text file, read as is.
pub type Classify = Arc<dyn Fn(&Path) -> Option<TextCodec> + Send + Sync>;

/// Why a read was stopped.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} holds a line longer than {limit} bytes (the most a CSV/NDJSON record may take, --max-record-size): it is not read further"
)]
pub struct LineTooLong {
    pub path: String,
    pub limit: usize,
}

/// Fails reads of text files at the first line longer than `limit`; everything else is
/// passed through.
pub struct LineLimitStore {
    inner: Arc<dyn ObjectStore>,
    limit: usize,
    classify: Classify,
}

impl LineLimitStore {
    pub fn new(inner: Arc<dyn ObjectStore>, limit: usize, classify: Classify) -> Self {
        Self {
            inner,
            limit,
            classify,
        }
    }
}

impl fmt::Debug for LineLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineLimitStore")
            .field("store", &format_args!("{}", self.inner))
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for LineLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// Counts the bytes since the last newline; a write fails once they pass the limit.
struct LineMeter {
    current: usize,
    limit: usize,
}

impl Write for LineMeter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', buf) {
            if self.current + (nl - start) > self.limit {
                return Err(io::Error::other(TooLong));
            }
            self.current = 0;
            start = nl + 1;
        }
        self.current += buf.len() - start;
        if self.current > self.limit {
            return Err(io::Error::other(TooLong));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The marker a [`LineMeter`] fails with, told apart from a decoder's own errors.
#[derive(Debug, thiserror::Error)]
#[error("line too long")]
struct TooLong;

/// A body's line meter, behind the decoder its encoding needs.
enum Meter {
    Plain(LineMeter),
    Gzip(Box<flate2::write::MultiGzDecoder<LineMeter>>),
    Bzip2(Box<bzip2::write::BzDecoder<LineMeter>>),
    Xz(Box<liblzma::write::XzDecoder<LineMeter>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, LineMeter>>),
    /// The body cannot be decoded here (corrupt, or a range inside it): the reader will say
    /// why, with its own words.
    Off,
}

impl Meter {
    fn new(codec: TextCodec, limit: usize) -> Self {
        let m = LineMeter { current: 0, limit };
        match codec {
            TextCodec::Plain => Self::Plain(m),
            TextCodec::Gzip => Self::Gzip(Box::new(flate2::write::MultiGzDecoder::new(m))),
            TextCodec::Bzip2 => Self::Bzip2(Box::new(bzip2::write::BzDecoder::new(m))),
            TextCodec::Xz => Self::Xz(Box::new(liblzma::write::XzDecoder::new_multi_decoder(m))),
            TextCodec::Zstd => match zstd::stream::write::Decoder::new(m) {
                Ok(d) => Self::Zstd(Box::new(d)),
                Err(_) => Self::Off,
            },
        }
    }

    /// `Err` only when a line passed the limit.
    fn feed(&mut self, chunk: &[u8]) -> std::result::Result<(), TooLong> {
        let r = match self {
            Self::Plain(m) => m.write_all(chunk),
            Self::Gzip(d) => d.write_all(chunk),
            Self::Bzip2(d) => d.write_all(chunk),
            Self::Xz(d) => d.write_all(chunk),
            Self::Zstd(d) => d.write_all(chunk),
            Self::Off => Ok(()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.get_ref().is_some_and(|e| e.is::<TooLong>()) => Err(TooLong),
            Err(_) => {
                *self = Self::Off;
                Ok(())
            }
        }
    }
}

fn guarded(
    body: BoxStream<'static, Result<Bytes>>,
    mut meter: Meter,
    path: &Path,
    limit: usize,
) -> BoxStream<'static, Result<Bytes>> {
    let path = path.to_string();
    body.map(move |chunk| {
        let chunk = chunk?;
        meter
            .feed(&chunk)
            .map_err(|TooLong| object_store::Error::Generic {
                store: "line limit",
                source: Box::new(LineTooLong {
                    path: path.clone(),
                    limit,
                }),
            })?;
        Ok(chunk)
    })
    .boxed()
}

/// Largest piece handed to a reader at once. DataFusion's text readers decode at most one
/// batch (8,192 rows) per piece they are given and buffer the rest: pieces bigger than a
/// batch's bytes pile up, and a 5 GB CSV read in 1 MiB pieces grew the process by 1.3 GB.
/// 16 KiB is at most one batch of 2-byte lines; slicing copies nothing.
const PIECE: usize = 16 << 10;

fn in_slices(body: BoxStream<'static, Result<Bytes>>) -> BoxStream<'static, Result<Bytes>> {
    body.flat_map(|chunk| {
        let pieces: Vec<Result<Bytes>> = match chunk {
            Ok(b) if b.len() > PIECE => (0..b.len())
                .step_by(PIECE)
                .map(|at| Ok(b.slice(at..(at + PIECE).min(b.len()))))
                .collect(),
            other => vec![other],
        };
        futures::stream::iter(pieces)
    })
    .boxed()
}

/// A local file's range as a stream of 1 MiB blocking reads.
fn file_stream(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, Result<Bytes>> {
    const CHUNK: u64 = 1 << 20;
    futures::stream::try_unfold((file, range), |(mut file, range)| async move {
        if range.start >= range.end {
            return Ok(None);
        }
        let len = (range.end - range.start).min(CHUNK) as usize;
        let start = range.start;
        // The buffer is allocated here, on the thread that will also free it once the
        // reader is done with it: allocated on a blocking-pool thread and freed on another,
        // the allocator kept each freed megabyte on the allocating thread's list, and a 5 GB
        // file grew the process by a gigabyte. Not zeroed first: it is read into.
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        let read = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            file.seek(SeekFrom::Start(start))?;
            (&mut file).take(len as u64).read_to_end(&mut buf)?;
            if buf.len() != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended {} bytes early", len - buf.len()),
                ));
            }
            Ok::<_, io::Error>((file, buf))
        })
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r);
        match read {
            Ok((file, buf)) => Ok(Some((
                Bytes::from(buf),
                (file, start + len as u64..range.end),
            ))),
            Err(e) => Err(object_store::Error::Generic {
                store: "line limit",
                source: Box::new(e),
            }),
        }
    })
    .boxed()
}

#[async_trait::async_trait]
impl ObjectStore for LineLimitStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let codec = match (options.head, (self.classify)(location)) {
            (false, Some(c)) => c,
            _ => return self.inner.get_opts(location, options).await,
        };
        // A compressed body is decodable from its start only.
        let from_start = match &options.range {
            None => true,
            Some(GetRange::Bounded(r)) => r.start == 0,
            Some(GetRange::Offset(o)) => *o == 0,
            Some(GetRange::Suffix(_)) => false,
        };
        if codec != TextCodec::Plain && !from_start {
            return self.inner.get_opts(location, options).await;
        }
        let r = self.inner.get_opts(location, options).await?;
        let (meta, range, attributes) = (r.meta.clone(), r.range.clone(), r.attributes.clone());
        let stream = match r.payload {
            // object_store would read a local file in 8 KiB blocking reads, which halves
            // the speed of a large CSV; 1 MiB reads keep it.
            GetResultPayload::File(file, _) => file_stream(file, range.clone()),
            GetResultPayload::Stream(s) => s,
        };
        let body = guarded(stream, Meter::new(codec, self.limit), location, self.limit);
        Ok(GetResult {
            payload: GetResultPayload::Stream(in_slices(body)),
            meta,
            range,
            attributes,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // Range reads of text files come through `get_opts`, and its meter.
        if (self.classify)(location).is_none() {
            return self.inner.get_ranges(location, ranges).await;
        }
        super::ranges_via_get_opts(self, location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn classify() -> Classify {
        Arc::new(|p: &Path| match p.extension() {
            Some("csv") => Some(TextCodec::Plain),
            Some("gz") => Some(TextCodec::Gzip),
            Some("zst") => Some(TextCodec::Zstd),
            _ => None,
        })
    }

    async fn read(s: &LineLimitStore, name: &str) -> std::result::Result<usize, String> {
        let r = s.get(&Path::from(name)).await.map_err(|e| e.to_string())?;
        let mut n = 0;
        let mut body = r.into_stream();
        while let Some(c) = body.next().await {
            n += c.map_err(|e| e.to_string())?.len();
        }
        Ok(n)
    }

    #[tokio::test]
    async fn a_line_past_the_limit_stops_the_read_compressed_or_not() {
        let mem = Arc::new(InMemory::new());
        let short = "a,b\n".repeat(10_000);
        let long = format!("a,b\n{}\n", "x".repeat(5_000));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // A bomb in miniature: 4 MB of one line from a few kilobytes.
        gz.write_all(&vec![b'z'; 4 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 10_000, "{}", bomb.len());
        let zst = zstd::encode_all(short.as_bytes(), 3).unwrap();
        for (name, body) in [
            ("short.csv", short.as_bytes().to_vec()),
            ("long.csv", long.into_bytes()),
            ("bomb.csv.gz", bomb.clone()),
            ("bomb.parquet", bomb),
            ("short.csv.zst", zst),
            ("corrupt.csv.gz", b"not gzip at all".to_vec()),
        ] {
            mem.put(&Path::from(name), body.into()).await.unwrap();
        }
        let s = LineLimitStore::new(mem, 4_096, classify());
        assert_eq!(read(&s, "short.csv").await, Ok(40_000));
        let e = read(&s, "long.csv").await.unwrap_err();
        assert!(
            e.contains("long.csv holds a line longer than 4096 bytes"),
            "{e}"
        );
        let e = read(&s, "bomb.csv.gz").await.unwrap_err();
        assert!(e.contains("bomb.csv.gz holds a line longer"), "{e}");
        // Not a text file: read as is. A zstd body is measured decoded, and passes.
        assert!(read(&s, "bomb.parquet").await.is_ok());
        assert!(read(&s, "short.csv.zst").await.is_ok());
        // A body the decoder cannot read is handed on for the reader to judge.
        assert_eq!(read(&s, "corrupt.csv.gz").await, Ok(15));
        // A range of a plain file is measured too.
        let r = s
            .get_opts(
                &Path::from("long.csv"),
                GetOptions {
                    range: Some((0..4_200).into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(r.bytes().await.is_err());
    }

    /// A local text file is read in big blocking reads but handed on in small pieces, whole
    /// and in order (big pieces pile up in DataFusion's text readers: see [`PIECE`]).
    #[tokio::test]
    async fn local_text_files_are_handed_on_in_small_pieces() {
        let d = tempfile::tempdir().unwrap();
        let text: String = (0..300_000).map(|i| format!("{i},x\n")).collect();
        std::fs::write(d.path().join("big.csv"), &text).unwrap();
        let local =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(d.path()).unwrap());
        let s = LineLimitStore::new(local, 4_096, classify());
        let mut body = s.get(&Path::from("big.csv")).await.unwrap().into_stream();
        let mut got = Vec::new();
        let mut pieces = 0;
        while let Some(c) = body.next().await {
            let c = c.unwrap();
            assert!(c.len() <= PIECE, "{}", c.len());
            got.extend_from_slice(&c);
            pieces += 1;
        }
        assert_eq!(got, text.as_bytes());
        assert!(pieces >= text.len() / PIECE, "{pieces}");
    }
}
