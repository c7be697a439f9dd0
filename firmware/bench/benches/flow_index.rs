//! The flow index against hashbrown (not a test): random lookups of the
//! flows of a full table, the way the engine finds a packet's flow (hash,
//! index, then the key compared in the flow's slot). The README's
//! "hand-written pieces" quotes its figures.
//!
//! `cargo bench -p pitap-bench --bench flow_index`

use std::hint::black_box;
use std::time::Instant;

use pitap_bench::gen::Rng;
use pitap_flow_core::flow::Flow;
use pitap_flow_core::index::FlowIndex;
use pitap_flow_core::key::FlowKey;

const LOOKUPS: usize = 20_000_000;

fn key(i: u32) -> FlowKey {
    let mut k = FlowKey::default();
    k.addrs[0][..4].copy_from_slice(&(0x0a00_0000 | i).to_be_bytes());
    k.addrs[1][..4].copy_from_slice(&0xc000_0201u32.to_be_bytes());
    k.ports = [(i % 50_000) as u16, 443];
    k.proto = 6;
    k
}

fn hash(k: &FlowKey) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(7).hash_one(k.words())
}

fn best_of_3(mut run: impl FnMut() -> u64) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut check = 0;
    for _ in 0..3 {
        let t = Instant::now();
        check = run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best * 1e9 / LOOKUPS as f64, check)
}

fn main() {
    println!(
        "flow index vs hashbrown::HashTable: {LOOKUPS} random lookups of a full table, best of 3"
    );
    for flows in [65_536u32, 1_048_576] {
        let slab: Vec<Flow> = (0..flows)
            .map(|i| {
                let mut f = Flow::default();
                f.key = key(i);
                f
            })
            .collect();
        let hashes: Vec<u64> = slab.iter().map(|f| hash(&f.key)).collect();
        let mut index = FlowIndex::new(flows as usize);
        let mut table = hashbrown::HashTable::<u32>::with_capacity(flows as usize);
        for (i, &h) in hashes.iter().enumerate() {
            index.insert(h, i as u32);
            table.insert_unique(h, i as u32, |&s| hashes[s as usize]);
        }
        let mut rng = Rng::new(11);
        let order: Vec<(u32, u64)> = (0..LOOKUPS)
            .map(|_| {
                let i = rng.below(u64::from(flows)) as u32;
                (i, hashes[i as usize])
            })
            .collect();
        let (ours, a) = best_of_3(|| {
            let mut sum = 0u64;
            for &(i, h) in &order {
                let want = &slab[i as usize].key;
                let found = index.find(h, |s| slab[s as usize].key == *want);
                sum += u64::from(black_box(found).unwrap_or(0));
            }
            sum
        });
        let (theirs, b) = best_of_3(|| {
            let mut sum = 0u64;
            for &(i, h) in &order {
                let want = &slab[i as usize].key;
                let found = table.find(h, |&s| slab[s as usize].key == *want);
                sum += u64::from(*black_box(found).unwrap_or(&0));
            }
            sum
        });
        assert_eq!(a, b, "both found the same flows");
        println!(
            "  {flows:>9} flows: flow index {ours:.1} ns/lookup, hashbrown {theirs:.1} ns/lookup ({:.2}x)",
            theirs / ours
        );
        churn(flows, &hashes, index, table);
    }
}

/// A full table under churn (a SYN flood: one flow out, a new one in, over
/// and over): the mean and the worst single replacement. hashbrown's
/// deletions leave tombstones that make it rehash in place now and then;
/// backward-shift deletion leaves none.
fn churn(flows: u32, hashes: &[u64], mut index: FlowIndex, mut table: hashbrown::HashTable<u32>) {
    let mut rng = Rng::new(5);
    let plan: Vec<(u32, u64)> = (0..2_000_000)
        .map(|_| (rng.below(u64::from(flows)) as u32, rng.next_u64()))
        .collect();
    let (ours, ours_worst) = replace_all(&plan, hashes, |slot, old, new, _| {
        index.remove(old, slot);
        index.insert(new, slot);
    });
    let (theirs, theirs_worst) = replace_all(&plan, hashes, |slot, old, new, live| {
        if let Ok(e) = table.find_entry(old, |&s| s == slot) {
            e.remove();
        }
        table.insert_unique(new, slot, |&s| live[s as usize]);
    });
    println!(
        "  {flows:>9} flows, churn: flow index {ours:.1} ns/replacement (worst {:.1} us), hashbrown {theirs:.1} ns (worst {:.1} us)",
        ours_worst as f64 / 1e3,
        theirs_worst as f64 / 1e3
    );
}

/// Replaces the flow of each planned slot by one with a new hash; the mean
/// time per replacement and the worst one, ns.
fn replace_all(
    plan: &[(u32, u64)],
    hashes: &[u64],
    mut replace: impl FnMut(u32, u64, u64, &[u64]),
) -> (f64, u128) {
    let mut live = hashes.to_vec();
    let mut worst = 0u128;
    let start = Instant::now();
    for &(slot, new) in plan {
        let old = live[slot as usize];
        live[slot as usize] = new;
        let t = Instant::now();
        replace(slot, old, new, &live);
        worst = worst.max(t.elapsed().as_nanos());
    }
    (start.elapsed().as_nanos() as f64 / plan.len() as f64, worst)
}
