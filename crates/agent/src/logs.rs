//! Container logs as `kubectl logs` shows them, read from the CRI log format the runtime writes
//! (`TIMESTAMP STREAM TAG CONTENT` per line, tag `P` for a piece of a longer line, `F` for its
//! end): whole lines, optionally with their timestamps, from `since` on, the last `tail_lines`,
//! at most `limit_bytes`; with `follow`, new lines as they are written until the container
//! stops. The file is read as a stream, so a large log costs the reader no more memory than
//! its tail.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// Which part of a container's log to read.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub timestamps: bool,
    /// Lines written before this are left out.
    pub since: Option<Timestamp>,
}

/// Where a container's log is.
pub enum LogSource {
    /// A CRI log file, which may still grow.
    File(PathBuf),
    /// The whole log in the CRI format, held by the runtime.
    Memory(Vec<u8>),
}

/// Whether the container still runs (while it does, a followed log may grow).
pub type StillRunning = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send>;

/// How long a followed log waits for more lines before it looks again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// How often running containers' logs are looked at for rotation (the kubelet's 10 s).
pub const ROTATION_PERIOD: Duration = Duration::from_secs(10);

/// When a container's log file is rotated and how many files of it are kept, the current one
/// included (the kubelet's `--container-log-max-size` and `--container-log-max-files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    pub max_size: u64,
    pub max_files: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Rotates the log at `path` if it outgrew `limits`: the oldest rotated files go so that at
/// most `max_files` remain with the new one, and `path` is renamed `path.YYYYMMDD-HHMMSS`
/// (the kubelet's names). Returns that name: the runtime must then reopen the log (and,
/// if it cannot, the file is renamed back).
pub fn rotate(
    path: &std::path::Path,
    limits: LogLimits,
    now: Timestamp,
) -> std::io::Result<Option<PathBuf>> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if size <= limits.max_size {
        return Ok(None);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(None);
    };
    let prefix = format!("{name}.");
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    rotated.sort();
    let keep = limits.max_files.max(2) - 2;
    let excess = rotated.len().saturating_sub(keep);
    for old in rotated.drain(..excess) {
        std::fs::remove_file(old)?;
    }
    let stamp = now.strftime("%Y%m%d-%H%M%S").to_string();
    let mut target = dir.join(format!("{prefix}{stamp}"));
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{prefix}{stamp}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &target)?;
    Ok(Some(target))
}
/// A line longer than this (the runtime splits long lines into pieces of 16 KiB) is cut.
const MAX_LINE: usize = 1 << 20;

/// Joins CRI records into output lines.
struct Lines {
    timestamps: bool,
    since: Option<Timestamp>,
    partial: Vec<u8>,
    /// The partial line is before `since` and is skipped.
    skipping: bool,
}

impl Lines {
    /// One CRI record (without its newline); a finished output line, if this ends one.
    fn record(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        let mut parts = raw.splitn(4, |b| *b == b' ');
        let ts = parts.next()?;
        let _stream = parts.next()?;
        let tag = parts.next()?;
        let content = parts.next().unwrap_or_default();
        if self.partial.is_empty() && !self.skipping {
            let at = std::str::from_utf8(ts)
                .ok()
                .and_then(|t| t.parse::<Timestamp>().ok());
            // Not a CRI record without a time.
            at?;
            self.skipping = matches!((self.since, at), (Some(s), Some(a)) if a < s);
            if self.timestamps && !self.skipping {
                self.partial.extend_from_slice(ts);
                self.partial.push(b' ');
            }
        }
        if !self.skipping && self.partial.len() < MAX_LINE {
            let room = MAX_LINE - self.partial.len();
            self.partial
                .extend_from_slice(&content[..content.len().min(room)]);
        }
        if tag.first() == Some(&b'P') {
            return None;
        }
        let skipped = std::mem::take(&mut self.skipping);
        let mut line = std::mem::take(&mut self.partial);
        if skipped {
            return None;
        }
        line.push(b'\n');
        Some(line)
    }
}

/// Output with the byte limit applied; `false` once nothing more may be sent.
struct Out {
    tx: mpsc::Sender<Vec<u8>>,
    left: Option<usize>,
}

impl Out {
    async fn send(&mut self, mut chunk: Vec<u8>) -> bool {
        if let Some(left) = &mut self.left {
            chunk.truncate(*left);
            *left -= chunk.len();
        }
        if !chunk.is_empty() && self.tx.send(chunk).await.is_err() {
            return false;
        }
        self.left != Some(0)
    }
}

/// Reads the log from `source` into `tx` as `options` say; with `running`, follows it until
/// the container stops (or the receiver goes away).
pub async fn stream(
    source: LogSource,
    options: LogOptions,
    running: Option<StillRunning>,
    tx: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let reader: Box<dyn AsyncRead + Send + Unpin> = match source {
        LogSource::File(path) => Box::new(tokio::fs::File::open(path).await?),
        LogSource::Memory(bytes) => Box::new(std::io::Cursor::new(bytes)),
    };
    let mut reader = BufReader::new(reader);
    let mut lines = Lines {
        timestamps: options.timestamps,
        since: options.since,
        partial: Vec::new(),
        skipping: false,
    };
    let mut out = Out {
        tx,
        left: options.limit_bytes,
    };
    let mut tail: VecDeque<Vec<u8>> = VecDeque::new();
    let mut buf = Vec::new();
    // What is there now.
    loop {
        buf.clear();
        let n = read_record(&mut reader, &mut buf).await?;
        if n == 0 || !buf.ends_with(b"\n") {
            break;
        }
        let Some(line) = lines.record(&buf[..buf.len() - 1]) else {
            continue;
        };
        match options.tail_lines {
            Some(0) => {}
            Some(t) => {
                if tail.len() == t {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            None => {
                if !out.send(line).await {
                    return Ok(());
                }
            }
        }
    }
    for line in tail {
        if !out.send(line).await {
            return Ok(());
        }
    }
    let Some(mut running) = running else {
        return Ok(());
    };
    // A record cut short at the end of what was there is completed by what comes next.
    let mut pending = std::mem::take(&mut buf);
    let mut polls = 0u32;
    let mut last_look = false;
    loop {
        let n = read_record(&mut reader, &mut pending).await?;
        if n > 0 && pending.ends_with(b"\n") {
            if let Some(line) = lines.record(&pending[..pending.len() - 1]) {
                if !out.send(line).await {
                    return Ok(());
                }
            }
            pending.clear();
            continue;
        }
        if last_look {
            return Ok(());
        }
        if out.tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
        polls += 1;
        // Once a second: a stopped container writes no more, so what is left is read once more.
        if polls.is_multiple_of(5) && !running().await {
            last_look = true;
        }
    }
}

/// Reads up to and including the next newline, at most [`MAX_LINE`] bytes more than `buf`
/// holds (a record without a newline for that long is cut there).
async fn read_record<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..used]);
        r.consume(used);
        total += used;
        if done || buf.len() >= MAX_LINE + 64 {
            if !done {
                buf.push(b'\n');
            }
            return Ok(total);
        }
    }
}

/// The whole output for `options` (no follow), for callers that want it at once.
pub async fn read_all(source: LogSource, options: LogOptions) -> std::io::Result<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel(16);
    let reading = tokio::spawn(stream(source, options, None, tx));
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend_from_slice(&chunk);
    }
    reading.await.map_err(std::io::Error::other)??;
    Ok(out)
}

/// One CRI log record, as the runtime writes it.
pub fn record(at: Timestamp, stream: &str, line: &str) -> String {
    format!("{at} {stream} F {line}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_log_is_renamed_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let limits = LogLimits {
            max_size: 10,
            max_files: 3,
        };
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        std::fs::write(&log, "small").unwrap();
        assert_eq!(
            rotate(&log, limits, at("2026-12-05T10:00:00Z")).unwrap(),
            None
        );
        assert_eq!(
            rotate(
                &dir.path().join("none.log"),
                limits,
                at("2026-12-05T10:00:00Z")
            )
            .unwrap(),
            None
        );
        for (i, when) in [
            "2026-12-05T10:00:01Z",
            "2026-12-05T10:00:02Z",
            "2026-12-05T10:00:02Z",
        ]
        .iter()
        .enumerate()
        {
            std::fs::write(&log, format!("grown past ten bytes {i}")).unwrap();
            let rotated = rotate(&log, limits, at(when)).unwrap().unwrap();
            assert!(!log.exists());
            assert_eq!(
                std::fs::read_to_string(&rotated).unwrap(),
                format!("grown past ten bytes {i}")
            );
        }
        // Two rotated files at most beside the current one; the same second gets a suffix.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["0.log.20261205-100002", "0.log.20261205-100002.1"]);
    }

    const TEXT: &str = "2026-12-05T10:00:00.1Z stdout F one\n\
                        2026-12-05T10:00:01.1Z stderr P tw\n\
                        2026-12-05T10:00:01.2Z stderr F o\n\
                        2026-12-05T10:00:02.1Z stdout F \n\
                        garbage\n\
                        2026-12-05T10:00:03.1Z stdout F three\n";

    async fn read(options: LogOptions) -> String {
        let out = read_all(LogSource::Memory(TEXT.into()), options)
            .await
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn cri_logs_read_as_kubectl_shows_them() {
        assert_eq!(read(LogOptions::default()).await, "one\ntwo\n\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            read(tail).await,
            "2026-12-05T10:00:02.1Z \n2026-12-05T10:00:03.1Z three\n"
        );
        let limited = LogOptions {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(read(limited).await, "one\nt");
        let since = LogOptions {
            since: Some("2026-12-05T10:00:01.15Z".parse().unwrap()),
            ..Default::default()
        };
        // A line is as old as its first piece.
        assert_eq!(read(since).await, "\nthree\n");
        let none = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(read(none).await, "");
    }

    #[tokio::test]
    async fn a_followed_log_gets_new_lines_until_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, record(Timestamp::now(), "stdout", "first")).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stopped.clone();
        let running: StillRunning = Box::new(move || {
            let stopped = flag.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { !stopped })
        });
        let reading = tokio::spawn(stream(
            LogSource::File(path.clone()),
            LogOptions::default(),
            Some(running),
            tx,
        ));
        assert_eq!(rx.recv().await.unwrap(), b"first\n");
        // A record written in two pieces arrives whole.
        let second = record(Timestamp::now(), "stdout", "second");
        let (a, b) = second.split_at(10);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(a.as_bytes()).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(FOLLOW_POLL * 2).await;
        f.write_all(b.as_bytes()).unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"second\n");
        f.write_all(record(Timestamp::now(), "stderr", "last").as_bytes())
            .unwrap();
        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(rx.recv().await.unwrap(), b"last\n");
        assert!(rx.recv().await.is_none());
        reading.await.unwrap().unwrap();
    }
}
