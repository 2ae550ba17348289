//! Architectures: a space name plus one chosen option per block.
//!
//! Two forms, both round-trippable:
//! - JSON (serde): `{"space":"mobilenet","blocks":[{"k":3,"e":6,"d":2,"se":false,"w":1.0}, ...]}`
//! - text, for the command line and logs: `mobilenet:k3-e6-d2-se0-w1/k5-e4-d1-se1/...`, where a
//!   block is its settings as `<key><value>` joined by `-` in the space's dimension order, and
//!   blocks are joined by `/`.
//!
//! Parsing the text form needs the space (it knows each block's keys); validation against the
//! space ([`crate::SearchSpace::validate`]) turns an architecture into a [`Genome`], the compact
//! index form that searchers work on.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::value::Settings;

/// The chosen settings of one block, e.g. `{k: 3, e: 6, d: 2}`.
pub type BlockOption = Settings;

/// A network in a search space: one option per searchable block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// The search space's registered name.
    pub space: String,
    /// The chosen option of each block, in block order.
    pub blocks: Vec<BlockOption>,
}

/// An architecture as option indices, one per block, into the space's option lists.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Genome(pub Vec<u32>);

impl Genome {
    /// The option index of block `b`.
    pub fn option(&self, b: usize) -> usize {
        self.0[b] as usize
    }
}

/// The exact number of architectures in a space, however large.
///
/// Stored as base-10^9 limbs, least significant first, because realistic spaces exceed `u64`
/// and custom spaces may exceed `u128`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceSize {
    limbs: Vec<u32>,
}

const LIMB: u64 = 1_000_000_000;

impl SpaceSize {
    /// The product of the option counts of all blocks.
    pub fn product(counts: impl IntoIterator<Item = usize>) -> Self {
        let mut limbs = vec![1u32];
        for n in counts {
            let mut carry = 0u64;
            for limb in &mut limbs {
                let x = u64::from(*limb) * n as u64 + carry;
                *limb = (x % LIMB) as u32;
                carry = x / LIMB;
            }
            while carry > 0 {
                limbs.push((carry % LIMB) as u32);
                carry /= LIMB;
            }
        }
        while limbs.len() > 1 && limbs.last() == Some(&0) {
            limbs.pop();
        }
        Self { limbs }
    }

    /// log10 of the size, for "about 10^17" displays.
    pub fn log10(&self) -> f64 {
        let top = self.limbs.iter().rev().take(3).fold(0f64, |acc, &l| acc * LIMB as f64 + f64::from(l));
        let skipped = self.limbs.len().saturating_sub(3);
        top.log10() + 9.0 * skipped as f64
    }
}

impl fmt::Display for SpaceSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut it = self.limbs.iter().rev();
        if let Some(first) = it.next() {
            write!(f, "{first}")?;
        }
        for limb in it {
            write!(f, "{limb:09}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_size_is_exact_beyond_u128() {
        assert_eq!(SpaceSize::product([]).to_string(), "1");
        assert_eq!(SpaceSize::product([240; 6]).to_string(), (240u128.pow(6)).to_string());
        assert_eq!(SpaceSize::product([0, 5]).to_string(), "0");
        // 1000^15 = 10^45 does not fit in u128 (3.4e38).
        let big = SpaceSize::product([1000; 15]);
        assert_eq!(big.to_string(), format!("1{}", "0".repeat(45)));
        assert!((big.log10() - 45.0).abs() < 1e-9);
        assert_eq!(SpaceSize::product([1_000_000_007, 3]).to_string(), "3000000021");
    }
}
