//! Pod addresses from the node's podCIDR (what host-local IPAM does for a CNI bridge): the
//! network address, the first address (the bridge's gateway) and the broadcast address are
//! never given out; addresses are handed out round-robin, so a freed one is not reused at once.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid podCIDR {0:?}")]
    Invalid(String),
    #[error("no free address left in {0}")]
    Exhausted(String),
}

#[derive(Debug)]
pub struct PodIps {
    cidr: String,
    base: u128,
    v6: bool,
    /// Usable offsets are 2 ..= last.
    last: u128,
    next: u128,
    used: HashSet<u128>,
}

impl PodIps {
    pub fn new(cidr: &str) -> Result<PodIps, IpamError> {
        let invalid = || IpamError::Invalid(cidr.to_string());
        let (addr, len) = cidr.split_once('/').ok_or_else(invalid)?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let len: u32 = len.parse().map_err(|_| invalid())?;
        let (bits, base, v6) = match addr {
            IpAddr::V4(a) => (32, u32::from(a) as u128, false),
            IpAddr::V6(a) => (128, u128::from(a), true),
        };
        // At least one usable address: /30 for v4, /126 for v6.
        if len > bits - 2 {
            return Err(invalid());
        }
        let host_bits = bits - len;
        let size: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        let mask = !(size.wrapping_sub(1));
        let base = base & mask;
        // v4 keeps the broadcast address out; v6 has none, but keep the same rule for symmetry.
        let last = size.saturating_sub(2).min(u32::MAX as u128);
        Ok(PodIps {
            cidr: cidr.to_string(),
            base,
            v6,
            last,
            next: 2,
            used: HashSet::new(),
        })
    }

    fn addr(&self, offset: u128) -> IpAddr {
        let v = self.base + offset;
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(v))
        } else {
            IpAddr::V4(Ipv4Addr::from(v as u32))
        }
    }

    fn offset(&self, ip: IpAddr) -> Option<u128> {
        let v = match (ip, self.v6) {
            (IpAddr::V4(a), false) => u32::from(a) as u128,
            (IpAddr::V6(a), true) => u128::from(a),
            _ => return None,
        };
        let off = v.checked_sub(self.base)?;
        (2..=self.last).contains(&off).then_some(off)
    }

    /// Marks `ip` used (an address a running pod already has, after a restart); false if it is
    /// not an address of this range or already used.
    pub fn reserve(&mut self, ip: IpAddr) -> bool {
        match self.offset(ip) {
            Some(off) => self.used.insert(off),
            None => false,
        }
    }

    pub fn allocate(&mut self) -> Result<IpAddr, IpamError> {
        let count = self.last - 1;
        if self.used.len() as u128 >= count {
            return Err(IpamError::Exhausted(self.cidr.clone()));
        }
        loop {
            let off = self.next;
            self.next = if self.next >= self.last {
                2
            } else {
                self.next + 1
            };
            if self.used.insert(off) {
                return Ok(self.addr(off));
            }
        }
    }

    pub fn release(&mut self, ip: IpAddr) {
        if let Some(off) = self.offset(ip) {
            self.used.remove(&off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_usable_addresses_round_robin_until_exhausted() {
        let mut p = PodIps::new("10.42.3.0/29").unwrap();
        let got: Vec<String> = (0..5).map(|_| p.allocate().unwrap().to_string()).collect();
        assert_eq!(
            got,
            [
                "10.42.3.2",
                "10.42.3.3",
                "10.42.3.4",
                "10.42.3.5",
                "10.42.3.6"
            ]
        );
        assert_eq!(
            p.allocate(),
            Err(IpamError::Exhausted("10.42.3.0/29".into()))
        );
        p.release("10.42.3.3".parse().unwrap());
        assert_eq!(p.allocate().unwrap().to_string(), "10.42.3.3");
        assert!(!p.reserve("10.42.3.1".parse().unwrap()), "the gateway");
        assert!(!p.reserve("10.42.4.2".parse().unwrap()), "outside");
        assert!(PodIps::new("10.42.0.0/31").is_err());
        assert!(PodIps::new("nonsense").is_err());
        let mut v6 = PodIps::new("fd00:42::/64").unwrap();
        assert_eq!(v6.allocate().unwrap().to_string(), "fd00:42::2");
    }

    #[test]
    fn a_reserved_address_is_skipped() {
        let mut p = PodIps::new("10.42.0.0/24").unwrap();
        assert!(p.reserve("10.42.0.2".parse().unwrap()));
        assert!(!p.reserve("10.42.0.2".parse().unwrap()));
        assert_eq!(p.allocate().unwrap().to_string(), "10.42.0.3");
    }
}
