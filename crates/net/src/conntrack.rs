//! Forgetting stale UDP flows in the kernel's connection tracking, over ctnetlink.
//!
//! A UDP "connection" is a conntrack entry that lives as long as packets keep coming, and its
//! NAT is decided once, by its first packet: a client that keeps talking to a Service port
//! would go on being sent to an endpoint that is gone, and one that talked to a Service
//! address before it had endpoints would go on missing the DNAT. kube-proxy deletes those
//! entries when endpoints change; so does the proxy ([`crate::proxy`]), with [`delete_udp`].
//!
//! The table is dumped (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, IPv4 then IPv6), matched here,
//! and each match deleted by its original tuple (`IPCTNL_MSG_CT_DELETE`), as
//! `conntrack -D -p udp --orig-dst … --reply-src …` does.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = 0x3fff;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_UDP: u8 = 17;

/// Which UDP flows to forget: those whose original destination is `dst` (any, if `None`) at
/// `dst_port`, and whose replies come from `reply_src` (the endpoint a DNAT chose; any, if
/// `None`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Filter {
    pub dst: Option<IpAddr>,
    pub dst_port: u16,
    pub reply_src: Option<IpAddr>,
}

/// One tracked flow, as much of it as the filters look at, and what deleting it takes.
#[derive(Debug)]
struct Flow {
    proto: u8,
    dst: IpAddr,
    dst_port: u16,
    reply_src: IpAddr,
    /// The `CTA_TUPLE_ORIG` attribute's payload, sent back to delete the flow.
    orig: Vec<u8>,
    /// The `CTA_ZONE` attribute's payload, if the flow is in a zone.
    zone: Option<Vec<u8>>,
}

impl Filter {
    fn matches(&self, f: &Flow) -> bool {
        f.proto == IPPROTO_UDP
            && f.dst_port == self.dst_port
            && self.dst.is_none_or(|d| d == f.dst)
            && self.reply_src.is_none_or(|s| s == f.reply_src)
    }
}

/// Deletes the UDP flows any of `filters` matches; how many went. Blocking: a dump of the
/// whole table.
pub fn delete_udp(filters: &[Filter]) -> io::Result<usize> {
    if filters.is_empty() {
        return Ok(0);
    }
    let socket = Socket::open()?;
    let mut deleted = 0;
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let mut stale = Vec::new();
        socket.dump(family, |flow| {
            if filters.iter().any(|f| f.matches(&flow)) {
                stale.push(flow);
            }
        })?;
        for flow in stale {
            match socket.delete(family, &flow) {
                Ok(()) => deleted += 1,
                // Gone meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// The attributes in `buf`: (type less its flags, payload).
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, payload))
    })
}

fn attribute(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

/// A tuple's (source, destination, protocol, destination port).
fn tuple(buf: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16)> {
    let ip = attribute(buf, CTA_TUPLE_IP)?;
    let addr = |kind: u16| -> Option<IpAddr> {
        let a = attribute(ip, kind)?;
        match a.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(a).ok()?))),
            16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).ok()?))),
            _ => None,
        }
    };
    // CTA_IP_V4_SRC/DST are 1 and 2, CTA_IP_V6_SRC/DST 3 and 4.
    let (src, dst) = (addr(1).or_else(|| addr(3))?, addr(2).or_else(|| addr(4))?);
    let proto = attribute(buf, CTA_TUPLE_PROTO)?;
    let num = *attribute(proto, CTA_PROTO_NUM)?.first()?;
    let port = attribute(proto, CTA_PROTO_DST_PORT)
        .and_then(|p| <[u8; 2]>::try_from(p).ok())
        .map_or(0, u16::from_be_bytes);
    Some((src, dst, num, port))
}

/// The flow a dump message (past its netlink header) describes.
fn flow(msg: &[u8]) -> Option<Flow> {
    let attrs = msg.get(4..)?;
    let orig = attribute(attrs, CTA_TUPLE_ORIG)?;
    let (_, dst, proto, dst_port) = tuple(orig)?;
    let (reply_src, ..) = tuple(attribute(attrs, CTA_TUPLE_REPLY)?)?;
    Some(Flow {
        proto,
        dst,
        dst_port,
        reply_src,
        orig: orig.to_vec(),
        zone: attribute(attrs, CTA_ZONE).map(<[u8]>::to_vec),
    })
}

fn push_attribute(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A ctnetlink request: the netlink header, the netfilter header for `family`, `attrs`.
fn request(kind: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = u32::try_from(16 + 4 + attrs.len()).unwrap_or(u32::MAX);
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is not owned elsewhere.
        let socket = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
        // A kernel that never answers must not hang the proxy.
        let timeout = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: setsockopt(2) with a timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: send(2) of a buffer we own, to the kernel (the socket is unbound: pid 0).
        let n = unsafe { libc::send(self.0.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the answers to a request until it is done or acknowledged, handing each message
    /// (past its netlink header) to `each`.
    fn answers(&self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            // SAFETY: recv(2) into a buffer we own, of the length given.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut msgs = &buf[..n as usize];
            while msgs.len() >= 16 {
                let len = u32::from_ne_bytes([msgs[0], msgs[1], msgs[2], msgs[3]]) as usize;
                let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
                if len < 16 || len > msgs.len() {
                    return Err(io::Error::other("a truncated netlink message"));
                }
                let body = &msgs[16..len];
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return match code {
                            // The acknowledgement of a request.
                            0 => Ok(()),
                            e => Err(io::Error::from_raw_os_error(-e)),
                        };
                    }
                    _ => each(body),
                }
                msgs = &msgs[len.next_multiple_of(4).min(msgs.len())..];
            }
        }
    }

    fn dump(&self, family: u8, mut each: impl FnMut(Flow)) -> io::Result<()> {
        self.send(&request(
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            family,
            &[],
        ))?;
        self.answers(|body| {
            if let Some(f) = flow(body) {
                each(f);
            }
        })
    }

    fn delete(&self, family: u8, flow: &Flow) -> io::Result<()> {
        let mut attrs = Vec::new();
        push_attribute(&mut attrs, CTA_TUPLE_ORIG | NLA_F_NESTED, &flow.orig);
        if let Some(zone) = &flow.zone {
            push_attribute(&mut attrs, CTA_ZONE, zone);
        }
        self.send(&request(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            2,
            family,
            &attrs,
        ))?;
        self.answers(|_| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(program: &str, args: &[&str]) {
        let st = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "{program} {args:?}");
    }

    /// In a network namespace of the test's: a UDP packet to a "service address" DNATed to
    /// 127.0.0.1 leaves a flow; filters that do not match it leave it, one that does deletes
    /// it, once.
    #[test]
    fn stale_udp_flows_are_found_and_deleted() {
        let counts = std::thread::spawn(|| {
            // SAFETY: unshare(2) moves only this thread into a new network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            run("ip", &["link", "set", "lo", "up"]);
            run("ip", &["addr", "add", "10.96.0.1/32", "dev", "lo"]);
            let rules = "add table ip t; \
                         add chain ip t out { type nat hook output priority -100; }; \
                         add rule ip t out ip daddr 10.96.0.1 udp dport 53 dnat to 127.0.0.1:5353";
            run("nft", &[rules]);
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(b"hello", "10.96.0.1:53").unwrap();
            let vip: IpAddr = "10.96.0.1".parse().unwrap();
            let endpoint: IpAddr = "127.0.0.1".parse().unwrap();
            let other: IpAddr = "127.0.0.2".parse().unwrap();
            let filter = |dst, dst_port, reply_src| Filter {
                dst,
                dst_port,
                reply_src,
            };
            [
                delete_udp(&[
                    filter(Some(vip), 54, Some(endpoint)),
                    filter(Some(vip), 53, Some(other)),
                    filter(Some(other), 53, None),
                ])
                .unwrap(),
                delete_udp(&[filter(Some(vip), 53, Some(endpoint))]).unwrap(),
                delete_udp(&[filter(None, 53, None)]).unwrap(),
            ]
        })
        .join()
        .unwrap();
        assert_eq!(counts, [0, 1, 0]);
    }

    #[test]
    fn attributes_are_walked_with_their_padding() {
        let mut buf = Vec::new();
        push_attribute(&mut buf, 1, &[1, 2, 3]);
        push_attribute(&mut buf, 2 | NLA_F_NESTED, &[9; 4]);
        assert_eq!(buf.len(), 16);
        let got: Vec<(u16, &[u8])> = attributes(&buf).collect();
        assert_eq!(got, [(1, &[1u8, 2, 3][..]), (2, &[9u8; 4][..])]);
        // A length past the end stops the walk rather than reading beyond it.
        buf[8] = 200;
        assert_eq!(attributes(&buf).count(), 1);
    }
}
