//! SPDY/3.1 framing, as Kubernetes' streaming protocols use it (the `SPDY/3.1` upgrade of
//! `kubectl exec|attach|port-forward` and of the runtime's streaming server): data frames and
//! the control frames, with header blocks compressed by one zlib stream per direction and the
//! protocol's dictionary. No flow control: the peers (Go's spdystream) use none.
//!
//! What one peer can make us hold is bounded: a frame is at most [`MAX_FRAME`] bytes and a
//! header block inflates to at most [`MAX_HEADER_BLOCK`].

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The zlib dictionary of SPDY/3 header blocks (the protocol's constant).
const DICTIONARY: &[u8] = include_bytes!("spdy3.dict");
const VERSION: u16 = 3;
/// The largest frame read; the runtime's server writes data in 32 KiB pieces.
pub const MAX_FRAME: usize = 1 << 20;
/// The most a header block may inflate to.
pub const MAX_HEADER_BLOCK: usize = 64 << 10;
const FLAG_FIN: u8 = 0x01;

pub type Headers = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Settings,
    Ping(u32),
    GoAway {
        last: u32,
        status: u32,
    },
    Headers {
        id: u32,
        headers: Headers,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
}

/// The frame types, as numbered on the wire.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM's status for a stream this side does not take.
pub const REFUSED_STREAM: u32 = 3;

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("SPDY: {}", why.into()))
}

fn u32_at(b: &[u8], at: usize) -> io::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| invalid("frame too short"))
}

/// Reads frames from one direction of a connection.
pub struct Reader<R> {
    r: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(r: R) -> Reader<R> {
        Reader {
            r,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; `None` at a clean end of the connection.
    pub async fn read(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!("a frame of {len} bytes is too large")));
        }
        let mut payload = vec![0u8; len];
        self.r.read_exact(&mut payload).await?;
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                id,
                fin,
                data: payload.into(),
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(invalid(format!("version {version} is not 3")));
        }
        let id = || u32_at(&payload, 0).map(|v| v & 0x7fff_ffff);
        let frame = match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => Frame::SynStream {
                id: id()?,
                fin,
                headers: self.headers(payload.get(10..))?,
            },
            SYN_REPLY => Frame::SynReply {
                id: id()?,
                fin,
                headers: self.headers(payload.get(4..))?,
            },
            HEADERS => Frame::Headers {
                id: id()?,
                headers: self.headers(payload.get(4..))?,
            },
            RST_STREAM => Frame::RstStream {
                id: id()?,
                status: u32_at(&payload, 4)?,
            },
            SETTINGS => Frame::Settings,
            PING => Frame::Ping(u32_at(&payload, 0)?),
            GOAWAY => Frame::GoAway {
                last: id()?,
                status: u32_at(&payload, 4).unwrap_or(0),
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                id: id()?,
                delta: u32_at(&payload, 4)? & 0x7fff_ffff,
            },
            other => return Err(invalid(format!("unknown control frame type {other}"))),
        };
        Ok(Some(frame))
    }

    /// A header block: inflated with the connection's zlib stream, then decoded.
    fn headers(&mut self, block: Option<&[u8]>) -> io::Result<Headers> {
        let block = block.ok_or_else(|| invalid("frame too short"))?;
        let mut out = Vec::with_capacity(256);
        let mut at = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(invalid("a header block inflates too large"));
                }
                out.reserve(out.len());
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let result = self
                .inflate
                .decompress_vec(&block[at..], &mut out, FlushDecompress::Sync);
            at += (self.inflate.total_in() - in_before) as usize;
            match result {
                Ok(Status::StreamEnd) => return Err(invalid("the header stream ended")),
                Ok(_) => {
                    if at == block.len() && out.len() < out.capacity() {
                        break;
                    }
                    let stalled = out.len() == out_before && self.inflate.total_in() == in_before;
                    if stalled && out.len() < out.capacity() {
                        return Err(invalid("a header block does not inflate"));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| invalid(e.to_string()))?;
                }
                Err(e) => return Err(invalid(e.to_string())),
            }
        }
        decode_headers(&out)
    }
}

fn decode_headers(b: &[u8]) -> io::Result<Headers> {
    let count = u32_at(b, 0)? as usize;
    let mut at = 4;
    let string = |at: &mut usize| -> io::Result<String> {
        let len = u32_at(b, *at)? as usize;
        let s = b
            .get(*at + 4..*at + 4 + len)
            .ok_or_else(|| invalid("a header runs past its block"))?;
        *at += 4 + len;
        String::from_utf8(s.to_vec()).map_err(|_| invalid("a header is not UTF-8"))
    };
    // Each pair takes at least 8 bytes: the count cannot ask for more than the block holds.
    let mut headers = Vec::with_capacity(count.min(b.len() / 8));
    for _ in 0..count {
        let name = string(&mut at)?;
        let value = string(&mut at)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// Writes frames into one direction of a connection.
pub struct Writer<W> {
    w: W,
    deflate: Compress,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(w: W) -> io::Result<Writer<W>> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Writer { w, deflate })
    }

    pub async fn write(&mut self, frame: &Frame) -> io::Result<()> {
        let mut buf = BytesMut::new();
        let control = |buf: &mut BytesMut, kind: u16, flags: u8, body: &[u8]| {
            buf.put_u16(0x8000 | VERSION);
            buf.put_u16(kind);
            buf.put_u32(u32::from(flags) << 24 | body.len() as u32);
            buf.put_slice(body);
        };
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data { id, fin: f, data } => {
                if data.len() > MAX_FRAME {
                    return Err(invalid("a data frame is too large"));
                }
                buf.put_u32(id & 0x7fff_ffff);
                buf.put_u32(u32::from(fin(*f)) << 24 | data.len() as u32);
                buf.put_slice(data);
            }
            Frame::SynStream {
                id,
                fin: f,
                headers,
            } => {
                let mut body = BytesMut::new();
                body.put_u32(*id);
                body.put_u32(0);
                body.put_u16(0);
                body.put_slice(&self.deflate_headers(headers)?);
                control(&mut buf, SYN_STREAM, fin(*f), &body);
            }
            Frame::SynReply {
                id,
                fin: f,
                headers,
            } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend(self.deflate_headers(headers)?);
                control(&mut buf, SYN_REPLY, fin(*f), &body);
            }
            Frame::Headers { id, headers } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend(self.deflate_headers(headers)?);
                control(&mut buf, HEADERS, 0, &body);
            }
            Frame::RstStream { id, status } => control(
                &mut buf,
                RST_STREAM,
                0,
                &[id.to_be_bytes(), status.to_be_bytes()].concat(),
            ),
            Frame::Settings => control(&mut buf, SETTINGS, 0, &0u32.to_be_bytes()),
            Frame::Ping(id) => control(&mut buf, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last, status } => control(
                &mut buf,
                GOAWAY,
                0,
                &[last.to_be_bytes(), status.to_be_bytes()].concat(),
            ),
            Frame::WindowUpdate { id, delta } => control(
                &mut buf,
                WINDOW_UPDATE,
                0,
                &[id.to_be_bytes(), delta.to_be_bytes()].concat(),
            ),
        }
        self.w.write_all(&buf).await?;
        self.w.flush().await
    }

    /// A header block, compressed and flushed so that the peer can read it whole.
    fn deflate_headers(&mut self, headers: &Headers) -> io::Result<Vec<u8>> {
        let mut raw = BytesMut::new();
        raw.put_u32(headers.len() as u32);
        for (name, value) in headers {
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.to_ascii_lowercase().as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut at = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[at..], &mut out, FlushCompress::Sync)
                .map_err(|e| invalid(e.to_string()))?;
            at += (self.deflate.total_in() - before) as usize;
            // Done once all is in and the flush left room to spare.
            if at == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.w.shutdown().await
    }
}

/// A header's value (names compare without case, as SPDY sends them lower-cased).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_survive_the_wire_with_one_compression_stream_per_direction() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = Writer::new(a).unwrap();
        let mut r = Reader::new(b);
        let frames = vec![
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::SynStream {
                id: 3,
                fin: true,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::SynReply {
                id: 3,
                fin: false,
                headers: vec![],
            },
            Frame::Data {
                id: 3,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping(7),
            Frame::RstStream { id: 5, status: 3 },
            Frame::GoAway { last: 3, status: 0 },
            Frame::WindowUpdate { id: 1, delta: 100 },
            Frame::Settings,
        ];
        for f in &frames {
            w.write(f).await.unwrap();
        }
        for f in &frames {
            assert_eq!(r.read().await.unwrap().as_ref(), Some(f));
        }
        drop(w);
        assert_eq!(r.read().await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_frames_and_header_bombs_are_refused() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut r = Reader::new(b);
        // A data frame that says it is 16 MiB long.
        a.write_all(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert!(r.read().await.is_err());
        // A header block that inflates past the limit: 1 MiB of zeros compresses small.
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = Writer::new(a).unwrap();
        let mut r = Reader::new(b);
        let big = vec![("x".to_string(), "0".repeat(MAX_HEADER_BLOCK * 2))];
        w.write(&Frame::Headers {
            id: 1,
            headers: big,
        })
        .await
        .unwrap();
        assert!(r.read().await.is_err());
        // A count of pairs larger than the block.
        assert!(decode_headers(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
