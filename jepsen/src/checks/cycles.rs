//! Transaction dependency cycles (Adya's G0 and G1c), after
//! Jepsen's Kafka checker: a graph over the operations that took effect,
//! with edges derived from each key's version order.
//!
//! - ww: T1 wrote the value at dense index i of a key, T2 the one at i+1
//!   (taking each writer's last value on the key, see [`build`]).
//! - wr: T2 polled a value T1 wrote.
//!
//! G0 is a cycle of ww edges only; G1c a cycle of ww and wr edges with at
//! least one wr. Anti-dependency (rw) cycles (G-single, G2) are not
//! checked: a Kafka consumer's polls are not isolated from concurrent
//! writers, so a correct history has them. One cycle is reported per strongly connected component and kind,
//! so a tangle of transactions gives one anomaly, not thousands.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::analysis::Analysis;
use crate::anomaly::{Anomaly, CycleStep};
use crate::history::{Key, OpType};

/// How one transaction depends on another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rel {
    Ww,
    Wr,
}

impl Rel {
    fn name(self) -> &'static str {
        match self {
            Rel::Ww => "ww",
            Rel::Wr => "wr",
        }
    }
}

/// From -> to -> (relation -> a key that gives it). Positions are into
/// `Analysis::ops`.
type Graph = BTreeMap<usize, BTreeMap<usize, BTreeMap<Rel, Key>>>;

/// Whether the op at `pos` is a node: it took effect (ok, or info and seen).
fn is_node(a: &Analysis, pos: usize) -> bool {
    let op = &a.ops[pos];
    op.kind == OpType::Ok || (op.kind == OpType::Info && a.must_have_committed(op))
}

fn add(g: &mut Graph, from: usize, to: usize, rel: Rel, key: &Key) {
    if from == to {
        return;
    }
    g.entry(from)
        .or_default()
        .entry(to)
        .or_default()
        .entry(rel)
        .or_insert_with(|| key.clone());
}

fn build(a: &Analysis) -> Graph {
    let mut g = Graph::new();
    for (key, order) in &a.orders {
        let writers = a.writer_of.get(key);
        let writer = |v: i64| -> Option<usize> {
            writers
                .and_then(|w| w.get(&v))
                .copied()
                .filter(|p| is_node(a, *p))
        };
        // ww: a transaction's records on a key become visible together at
        // its commit marker, after its last record there, so the key orders
        // writers by their last record: other records may interleave inside
        // a transaction's range (that is int-send-skip, not a cycle).
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, v) in order.by_index.iter().enumerate() {
            if let Some(w) = writer(*v) {
                last.insert(w, i);
            }
        }
        let mut by_last: Vec<(usize, usize)> = last.into_iter().map(|(w, i)| (i, w)).collect();
        by_last.sort();
        for pair in by_last.windows(2) {
            add(&mut g, pair[0].1, pair[1].1, Rel::Ww, key);
        }
        // wr, from every node's polls of this key.
        for (pos, op) in a.ops.iter().enumerate() {
            if !is_node(a, pos) {
                continue;
            }
            let reads = op.reads();
            let Some(records) = reads.get(key) else {
                continue;
            };
            for (_, value) in records {
                if let Some(w) = writer(*value) {
                    add(&mut g, w, pos, Rel::Wr, key);
                }
            }
        }
    }
    g
}

/// The graph keeping only edges of the allowed relations.
fn restrict(g: &Graph, allowed: &[Rel]) -> Graph {
    let mut out = Graph::new();
    for (from, tos) in g {
        for (to, rels) in tos {
            for (rel, key) in rels {
                if allowed.contains(rel) {
                    add(&mut out, *from, *to, *rel, key);
                }
            }
        }
    }
    out
}

/// Strongly connected components with more than one node (Tarjan,
/// iterative so long histories cannot overflow the stack).
fn components(g: &Graph) -> Vec<BTreeSet<usize>> {
    let nodes: BTreeSet<usize> = g
        .iter()
        .flat_map(|(f, tos)| std::iter::once(*f).chain(tos.keys().copied()))
        .collect();
    let mut index: BTreeMap<usize, usize> = BTreeMap::new();
    let mut low: BTreeMap<usize, usize> = BTreeMap::new();
    let mut on_stack: BTreeSet<usize> = BTreeSet::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    let empty = BTreeMap::new();
    for &root in &nodes {
        if index.contains_key(&root) {
            continue;
        }
        // Frames: (node, successors not yet visited).
        let mut frames: Vec<(usize, Vec<usize>)> = Vec::new();
        let succ = |n: usize| -> Vec<usize> {
            g.get(&n).unwrap_or(&empty).keys().rev().copied().collect()
        };
        index.insert(root, next);
        low.insert(root, next);
        next += 1;
        stack.push(root);
        on_stack.insert(root);
        frames.push((root, succ(root)));
        while let Some((n, todo)) = frames.last_mut() {
            let n = *n;
            if let Some(m) = todo.pop() {
                if let std::collections::btree_map::Entry::Vacant(e) = index.entry(m) {
                    e.insert(next);
                    low.insert(m, next);
                    next += 1;
                    stack.push(m);
                    on_stack.insert(m);
                    frames.push((m, succ(m)));
                } else if on_stack.contains(&m) {
                    let l = low[&n].min(index[&m]);
                    low.insert(n, l);
                }
                continue;
            }
            frames.pop();
            if let Some((parent, _)) = frames.last() {
                let l = low[parent].min(low[&n]);
                low.insert(*parent, l);
            }
            if low[&n] == index[&n] {
                let mut comp = BTreeSet::new();
                loop {
                    let m = stack.pop().expect("tarjan: the root is on the stack");
                    on_stack.remove(&m);
                    comp.insert(m);
                    if m == n {
                        break;
                    }
                }
                if comp.len() > 1 {
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// Shortest path from `from` to `to` inside `within`, over `g`'s edges:
/// the nodes after `from`, ending with `to`.
fn path(g: &Graph, within: &BTreeSet<usize>, from: usize, to: usize) -> Option<Vec<usize>> {
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(n) = queue.pop_front() {
        if n == to && n != from {
            break;
        }
        for m in g.get(&n).into_iter().flat_map(|t| t.keys()) {
            if within.contains(m) && seen.insert(*m) {
                prev.insert(*m, n);
                queue.push_back(*m);
            }
        }
        if seen.contains(&to) {
            break;
        }
    }
    if !seen.contains(&to) {
        return None;
    }
    let mut out = vec![to];
    let mut n = to;
    while let Some(p) = prev.get(&n) {
        if *p == from {
            break;
        }
        out.push(*p);
        n = *p;
    }
    out.reverse();
    Some(out)
}

/// The cycle `cycle[0] -> cycle[1] -> ... -> cycle[0]` as steps, each
/// naming the relation and key of the edge leaving it: `first` for the
/// first edge, else the first of `allowed` the edge has.
fn steps(g: &Graph, cycle: &[usize], first: Rel, allowed: &[Rel], a: &Analysis) -> Vec<CycleStep> {
    let mut out = Vec::new();
    for (i, &from) in cycle.iter().enumerate() {
        let to = cycle[(i + 1) % cycle.len()];
        let rels = &g[&from][&to];
        let (rel, key) = if i == 0 {
            (first, rels[&first].clone())
        } else {
            let (r, k) = rels
                .iter()
                .find(|(r, _)| allowed.contains(r))
                .expect("cycle edges come from the graph searched");
            (*r, k.clone())
        };
        out.push(CycleStep {
            op: a.op_index(from),
            rel: rel.name().to_string(),
            key,
        });
    }
    out
}

/// For each component of `g` restricted to `allowed`, find a cycle whose
/// first edge is a `first` edge and whose other edges are in `rest`.
fn cycles_through(
    a: &Analysis,
    g: &Graph,
    allowed: &[Rel],
    first: Rel,
    rest: &[Rel],
) -> Vec<Vec<CycleStep>> {
    let sub = restrict(g, allowed);
    let rest_g = restrict(g, rest);
    let mut out = Vec::new();
    for comp in components(&sub) {
        let mut found = None;
        'search: for &from in &comp {
            for (to, rels) in sub.get(&from).into_iter().flatten() {
                if !comp.contains(to) || !rels.contains_key(&first) {
                    continue;
                }
                if let Some(back) = path(&rest_g, &comp, *to, from) {
                    let mut cycle = vec![from, *to];
                    cycle.extend(back.into_iter().filter(|n| *n != from));
                    found = Some(steps(g, &cycle, first, rest, a));
                    break 'search;
                }
            }
        }
        if let Some(s) = found {
            out.push(s);
        }
    }
    out
}

/// Report G0 and G1c cycles.
pub fn cycles(a: &Analysis, out: &mut Vec<Anomaly>) {
    let g = build(a);
    let key_of = |s: &[CycleStep]| s[0].key.clone();
    for cycle in cycles_through(a, &g, &[Rel::Ww], Rel::Ww, &[Rel::Ww]) {
        out.push(Anomaly::G0 {
            key: key_of(&cycle),
            cycle,
        });
    }
    for cycle in cycles_through(a, &g, &[Rel::Ww, Rel::Wr], Rel::Wr, &[Rel::Ww, Rel::Wr]) {
        out.push(Anomaly::G1c {
            key: key_of(&cycle),
            cycle,
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::{analyze, parse_history, Anomaly, AnomalyKind, Report};

    /// Lines `"<process> <type> <f> <value json>"`, index = position.
    fn check(lines: &[&str]) -> Report {
        let text: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut parts = line.splitn(4, ' ');
                let (p, kind, f) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let value = parts.next().unwrap_or("null");
                format!(
                    r#"{{"index":{i},"process":{p},"type":"{kind}","f":"{f}","value":{value},"time":{i}}}"#
                )
            })
            .collect();
        analyze(&parse_history(&text.join("\n")).unwrap())
    }

    fn cycle_ops(r: &Report, kind: AnomalyKind) -> Vec<Vec<(u64, String)>> {
        r.of(kind)
            .iter()
            .map(|a| match a {
                Anomaly::G0 { cycle, .. } | Anomaly::G1c { cycle, .. } => {
                    cycle.iter().map(|s| (s.op, s.rel.clone())).collect()
                }
                other => panic!("not a cycle: {other:?}"),
            })
            .collect()
    }

    fn has(r: &Report, kind: AnomalyKind) -> bool {
        !r.of(kind).is_empty()
    }

    const CYCLES: [AnomalyKind; 2] = [AnomalyKind::G0, AnomalyKind::G1c];

    #[test]
    fn g0_two_txns_write_two_keys_in_opposite_orders() {
        let r = check(&[
            r#"1 ok txn [["send",1,[0,10]],["send",2,[1,21]]]"#,
            r#"2 ok txn [["send",1,[1,11]],["send",2,[0,20]]]"#,
        ]);
        assert_eq!(
            cycle_ops(&r, AnomalyKind::G0),
            vec![vec![(0, "ww".to_string()), (1, "ww".to_string())]],
            "{}",
            r.to_json()
        );
        assert!(!has(&r, AnomalyKind::G1c), "{}", r.to_json());
    }

    #[test]
    fn no_g0_when_both_keys_order_the_txns_alike() {
        let r = check(&[
            r#"1 ok txn [["send",1,[0,10]],["send",2,[0,20]]]"#,
            r#"2 ok txn [["send",1,[1,11]],["send",2,[1,21]]]"#,
        ]);
        for k in CYCLES {
            assert!(!has(&r, k), "{k}: {}", r.to_json());
        }
    }

    #[test]
    fn no_g0_when_a_txn_failed() {
        // The same opposite orders, but one side certainly did not happen
        // (its values are then G1a-free only because nobody polled them).
        let r = check(&[
            r#"1 ok txn [["send",1,[0,10]],["send",2,[1,21]]]"#,
            r#"2 fail txn [["send",1,[1,11]],["send",2,[0,20]]]"#,
        ]);
        assert!(!has(&r, AnomalyKind::G0), "{}", r.to_json());
    }

    #[test]
    fn g1c_two_txns_read_each_others_writes() {
        let r = check(&[
            r#"1 ok txn [["send",1,[0,10]],["poll",{"2":[[0,20]]}]]"#,
            r#"2 ok txn [["poll",{"1":[[0,10]]}],["send",2,[0,20]]]"#,
        ]);
        assert_eq!(
            cycle_ops(&r, AnomalyKind::G1c),
            vec![vec![(0, "wr".to_string()), (1, "wr".to_string())]],
            "{}",
            r.to_json()
        );
        assert!(!has(&r, AnomalyKind::G0));
    }

    #[test]
    fn g1c_through_a_write_order() {
        // T1 -wr-> T2 (key 1), T2 -ww-> T1 (key 2).
        let r = check(&[
            r#"1 ok txn [["send",1,[0,10]],["send",2,[1,21]]]"#,
            r#"2 ok txn [["poll",{"1":[[0,10]]}],["send",2,[0,20]]]"#,
        ]);
        assert_eq!(
            cycle_ops(&r, AnomalyKind::G1c),
            vec![vec![(0, "wr".to_string()), (1, "ww".to_string())]],
            "{}",
            r.to_json()
        );
        assert!(!has(&r, AnomalyKind::G0));
    }

    #[test]
    fn no_g1c_when_the_write_order_agrees() {
        let r = check(&[
            r#"1 ok txn [["send",1,[0,10]],["send",2,[0,20]]]"#,
            r#"2 ok txn [["poll",{"1":[[0,10]]}],["send",2,[1,21]]]"#,
        ]);
        for k in CYCLES {
            assert!(!has(&r, k), "{k}: {}", r.to_json());
        }
    }

    #[test]
    fn an_info_txn_seen_takes_part_in_cycles() {
        let r = check(&[
            r#"1 ok txn [["send",1,[0,10]],["send",2,[1,21]]]"#,
            r#"2 info txn [["send",1,[1,11]],["send",2,[0,20]]]"#,
            r#"3 ok poll [["poll",{"1":[[1,11]]}]]"#,
        ]);
        assert!(has(&r, AnomalyKind::G0), "{}", r.to_json());
        let unseen = check(&[
            r#"1 ok txn [["send",1,[0,10]],["send",2,[1,21]]]"#,
            r#"2 info txn [["send",1,[1,11]],["send",2,[0,20]]]"#,
        ]);
        assert!(!has(&unseen, AnomalyKind::G0), "{}", unseen.to_json());
    }

    #[test]
    fn a_poll_of_an_aborted_txns_value_is_g1a() {
        let r = check(&[
            r#"1 fail txn [["send",1,[null,11]],["send",2,[null,20]]]"#,
            r#"2 ok txn [["poll",{"1":[[0,11]]}]]"#,
        ]);
        assert_eq!(r.of(AnomalyKind::G1a).len(), 1, "{}", r.to_json());
        let clean = check(&[
            r#"1 ok txn [["send",1,[0,11]]]"#,
            r#"2 ok txn [["poll",{"1":[[0,11]]}]]"#,
        ]);
        assert!(!has(&clean, AnomalyKind::G1a), "{}", clean.to_json());
    }
}
