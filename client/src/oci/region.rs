//! Argument regions: unions of masked comparisons, and their differences.

use std::collections::HashSet;

use crate::filter::{ArgCmp, CmpOp};

/// The values `v` of one argument with `v & mask == value` (`value` has no bit outside
/// `mask`; mask 0 is every value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Block {
    pub(super) mask: u64,
    pub(super) value: u64,
}

pub(super) const ANY: Block = Block { mask: 0, value: 0 };

/// A product of one block per argument: the calls one rule of masked comparisons matches.
pub(super) type Cube = [Block; 6];

pub(super) const UNIVERSE: Cube = [ANY; 6];

pub(super) fn block_and(a: Block, b: Block) -> Option<Block> {
    if (a.value ^ b.value) & a.mask & b.mask != 0 {
        return None;
    }
    Some(Block {
        mask: a.mask | b.mask,
        value: a.value | b.value,
    })
}

/// `a` without `b`, as disjoint blocks: one for each bit `b` fixes and `a` does not, from the
/// highest.
pub(super) fn block_minus(a: Block, b: Block) -> Vec<Block> {
    if block_and(a, b).is_none() {
        return vec![a];
    }
    let mut fixed = a.mask;
    let mut value = a.value;
    let mut out = Vec::new();
    for bit in (0..64).rev().map(|i| 1u64 << i) {
        if b.mask & !a.mask & bit == 0 {
            continue;
        }
        out.push(Block {
            mask: fixed | bit,
            value: value | (!b.value & bit),
        });
        fixed |= bit;
        value |= b.value & bit;
    }
    out
}

/// `lo..=hi` as aligned blocks.
pub(super) fn interval(lo: u64, hi: u64) -> Vec<Block> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u128::from(lo), u128::from(hi));
    while lo <= hi {
        let mut size: u128 = 1;
        while size < (1u128 << 64) && lo % (size * 2) == 0 && lo + size * 2 - 1 <= hi {
            size *= 2;
        }
        out.push(Block {
            mask: !((size - 1) as u64),
            value: lo as u64,
        });
        lo += size;
    }
    out
}

/// The values a comparison matches, as disjoint blocks.
pub(super) fn cmp_blocks(cmp: &ArgCmp) -> Vec<Block> {
    let v = cmp.value;
    match cmp.op {
        CmpOp::Eq => vec![Block {
            mask: u64::MAX,
            value: v,
        }],
        CmpOp::MaskedEq(mask) if v & !mask != 0 => Vec::new(),
        CmpOp::MaskedEq(mask) => vec![Block { mask, value: v }],
        CmpOp::Ne => block_minus(
            ANY,
            Block {
                mask: u64::MAX,
                value: v,
            },
        ),
        CmpOp::Lt if v == 0 => Vec::new(),
        CmpOp::Lt => interval(0, v - 1),
        CmpOp::Le => interval(0, v),
        CmpOp::Gt if v == u64::MAX => Vec::new(),
        CmpOp::Gt => interval(v + 1, u64::MAX),
        CmpOp::Ge => interval(v, u64::MAX),
    }
}

/// The calls a rule's comparisons match, as disjoint cubes.
pub(super) fn rule_cubes(args: &[ArgCmp]) -> Vec<Cube> {
    let mut cubes = vec![UNIVERSE];
    for cmp in args {
        let i = cmp.index as usize;
        let blocks = cmp_blocks(cmp);
        cubes = cubes
            .iter()
            .flat_map(|c| {
                blocks.iter().filter_map(move |&b| {
                    let mut c = *c;
                    c[i] = block_and(c[i], b)?;
                    Some(c)
                })
            })
            .collect();
    }
    cubes
}

pub(super) fn cube_and(a: &Cube, b: &Cube) -> Option<Cube> {
    let mut out = UNIVERSE;
    for i in 0..6 {
        out[i] = block_and(a[i], b[i])?;
    }
    Some(out)
}

/// `a` without `b`, as disjoint cubes.
pub(super) fn cube_minus(a: &Cube, b: &Cube) -> Vec<Cube> {
    if cube_and(a, b).is_none() {
        return vec![*a];
    }
    let mut out = Vec::new();
    let mut rest = *a;
    for i in 0..6 {
        for piece in block_minus(rest[i], b[i]) {
            let mut c = rest;
            c[i] = piece;
            out.push(c);
        }
        // Cannot fail: a and b meet.
        rest[i] = block_and(rest[i], b[i]).unwrap_or(rest[i]);
    }
    out
}

/// A region without another; disjoint cubes stay disjoint.
pub(super) fn region_minus(region: Vec<Cube>, minus: &[Cube]) -> Vec<Cube> {
    minus.iter().fold(region, |region, m| {
        region.iter().flat_map(|c| cube_minus(c, m)).collect()
    })
}

pub(super) fn region_and(a: &[Cube], b: &[Cube]) -> Vec<Cube> {
    a.iter()
        .flat_map(|x| b.iter().filter_map(move |y| cube_and(x, y)))
        .collect()
}

/// The union of possibly overlapping cubes, as disjoint cubes.
pub(super) fn disjoint(cubes: &[Cube]) -> Vec<Cube> {
    let mut out: Vec<Cube> = Vec::new();
    for c in cubes {
        let pieces = region_minus(vec![*c], &out);
        out.extend(pieces);
    }
    out
}

pub(super) fn is_universe(region: &[Cube]) -> bool {
    region_minus(vec![UNIVERSE], region).is_empty()
}

/// Joins cubes that differ in one bit of one block, until none do: fewer, wider rules. The
/// cubes are tried in a fixed order, so that the same region always gives the same rules.
pub(super) fn coalesce(region: Vec<Cube>) -> Vec<Cube> {
    let mut set: HashSet<Cube> = region.into_iter().collect();
    loop {
        let mut joined = None;
        let mut order: Vec<Cube> = set.iter().copied().collect();
        order.sort_by_key(|c| c.map(|b| (b.mask, b.value)));
        'search: for c in &order {
            for i in 0..6 {
                let mut bits = c[i].mask;
                while bits != 0 {
                    let bit = bits & bits.wrapping_neg();
                    bits &= !bit;
                    let mut twin = *c;
                    twin[i].value ^= bit;
                    if set.contains(&twin) {
                        let mut wide = *c;
                        wide[i].mask &= !bit;
                        wide[i].value &= !bit;
                        joined = Some((*c, twin, wide));
                        break 'search;
                    }
                }
            }
        }
        match joined {
            Some((a, b, wide)) => {
                set.remove(&a);
                set.remove(&b);
                set.insert(wide);
            }
            None => break,
        }
    }
    let mut out: Vec<Cube> = set.into_iter().collect();
    out.sort_by_key(|c| c.map(|b| (b.mask, b.value)));
    out
}

/// A cube as the comparisons of one rule: `SCMP_CMP_EQ` for a whole value, else
/// `SCMP_CMP_MASKED_EQ`.
pub(super) fn cube_args(cube: &Cube) -> Vec<ArgCmp> {
    (0..6)
        .filter(|&i| cube[i].mask != 0)
        .map(|i| {
            let b = cube[i];
            if b.mask == u64::MAX {
                ArgCmp::eq(i as u32, b.value)
            } else {
                ArgCmp::masked_eq(i as u32, b.mask, b.value)
            }
        })
        .collect()
}
