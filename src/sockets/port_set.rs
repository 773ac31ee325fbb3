//! Sets of TCP ports: a fixed 8 KiB bitmap, so membership is one lookup and the size never
//! depends on how many sockets a scan meets.

use std::fmt;
use std::str::FromStr;

/// An inclusive range of ports, as users write them: `15020` or `15000-15090`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const fn new(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<PortRange, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    format!("'{text}' is not a port (1-65535) or a range like 15000-15090")
                })
        };
        let range = match text.split_once('-') {
            Some((first, last)) => PortRange::new(port(first)?, port(last)?),
            None => {
                let p = port(text)?;
                PortRange::new(p, p)
            }
        };
        if range.first > range.last {
            return Err(format!("'{text}': the range runs backwards"));
        }
        Ok(range)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

#[derive(Clone)]
pub struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    pub fn new() -> PortSet {
        PortSet(Box::new([0; 1024]))
    }

    pub fn from_ranges(ranges: &[PortRange]) -> PortSet {
        let mut set = PortSet::new();
        for range in ranges {
            for port in range.first..=range.last {
                set.insert(port);
            }
        }
        set
    }

    pub fn insert(&mut self, port: u16) {
        self.0[usize::from(port) / 64] |= 1 << (port % 64);
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet::new()
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports: Vec<u16> = (0..=u16::MAX).filter(|p| self.contains(*p)).collect();
        f.debug_tuple("PortSet").field(&ports).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_reject() {
        assert_eq!("15020".parse(), Ok(PortRange::new(15020, 15020)));
        assert_eq!("15000-15090".parse(), Ok(PortRange::new(15000, 15090)));
        for bad in ["0", "70000", "a", "20-10", "-5", ""] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
        // Shown as written (help defaults, logs): a single port without a dash.
        assert_eq!(PortRange::new(15020, 15020).to_string(), "15020");
        assert_eq!(PortRange::new(15000, 15090).to_string(), "15000-15090");
    }

    #[test]
    fn membership_at_the_edges() {
        let set = PortSet::from_ranges(&[PortRange::new(63, 64), PortRange::new(65535, 65535)]);
        assert!(set.contains(63) && set.contains(64) && set.contains(65535));
        assert!(!set.contains(62) && !set.contains(65) && !set.contains(0));
    }
}
