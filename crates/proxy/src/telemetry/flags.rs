//! Envoy response flags, the `response_flags` label of Istio's metrics.

use std::fmt;

/// A set of response flags; displays as Envoy does (`UF,URX`), or `-` when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u16);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// No healthy upstream.
    pub const UH: Flags = Flags(1);
    /// Upstream request timeout.
    pub const UT: Flags = Flags(1 << 1);
    /// Upstream connection failure.
    pub const UF: Flags = Flags(1 << 2);
    /// Upstream connection termination (reset after connecting).
    pub const UC: Flags = Flags(1 << 3);
    /// Upstream overflow (circuit breaking).
    pub const UO: Flags = Flags(1 << 4);
    /// No route configured.
    pub const NR: Flags = Flags(1 << 5);
    /// Delay injected by a fault.
    pub const DI: Flags = Flags(1 << 6);
    /// Abort injected by a fault.
    pub const FI: Flags = Flags(1 << 7);
    /// Downstream connection termination.
    pub const DC: Flags = Flags(1 << 8);
    /// Upstream retry limit exceeded.
    pub const URX: Flags = Flags(1 << 9);
    /// No cluster (a route names an undefined subset).
    pub const NC: Flags = Flags(1 << 10);

    const NAMES: [(Flags, &'static str); 11] = [
        (Flags::UH, "UH"),
        (Flags::UT, "UT"),
        (Flags::UF, "UF"),
        (Flags::UC, "UC"),
        (Flags::UO, "UO"),
        (Flags::NR, "NR"),
        (Flags::DI, "DI"),
        (Flags::FI, "FI"),
        (Flags::DC, "DC"),
        (Flags::URX, "URX"),
        (Flags::NC, "NC"),
    ];

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_envoy() {
        assert_eq!(Flags::NONE.to_string(), "-");
        assert_eq!((Flags::URX | Flags::UF).to_string(), "UF,URX");
    }
}
