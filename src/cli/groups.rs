//! `weir groups`: like kafka-consumer-groups.sh.

use std::collections::{BTreeMap, BTreeSet};

use super::args::{parse, CliError, Kind};
use super::help_requested;
use crate::client::group::GroupAdmin;
use crate::client::offsets::list_offsets;
use crate::client::{Admin, ClientConfig, Cluster};

pub const USAGE: &str = "\
usage: weir groups --bootstrap-server HOST:PORT ACTION [options]

actions (exactly one):
  --list                   list group ids (with --state: also their state)
  --describe               per partition of --group: current offset, log end
                           offset, lag, consumer id, host, client id
  --reset-offsets          set --group's committed offsets of --topic (the
                           group must have no members), with one of:
                             --to-earliest | --to-latest | --to-offset N |
                             --shift-by N | --to-datetime YYYY-MM-DDTHH:MM:SS[.sss]
                           and --dry-run (print only, the default) or --execute
  --delete                 delete --group (only a group without members)

options:
  --group G
  --topic T
  --state                  with --list: print each group's state";

const SPEC: &[(&str, Kind)] = &[
    ("bootstrap-server", Kind::Value),
    ("list", Kind::Switch),
    ("describe", Kind::Switch),
    ("reset-offsets", Kind::Switch),
    ("delete", Kind::Switch),
    ("group", Kind::Value),
    ("topic", Kind::Value),
    ("state", Kind::Switch),
    ("to-earliest", Kind::Switch),
    ("to-latest", Kind::Switch),
    ("to-offset", Kind::Value),
    ("shift-by", Kind::Value),
    ("to-datetime", Kind::Value),
    ("dry-run", Kind::Switch),
    ("execute", Kind::Switch),
];

pub async fn run(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let actions: Vec<&str> = ["list", "describe", "reset-offsets", "delete"]
        .into_iter()
        .filter(|a| p.has(a))
        .collect();
    if actions.len() != 1 {
        return Err(CliError::new(
            "give exactly one of --list, --describe, --reset-offsets, --delete",
        ));
    }
    let bootstrap = p.required("bootstrap-server")?;
    let mut cc = ClientConfig::new(bootstrap);
    cc.connection.client_id = "weir-groups".to_string();
    let cluster = Cluster::connect(cc).await?;
    let groups = GroupAdmin::new(cluster.clone());
    match actions[0] {
        "list" => {
            for g in groups.list().await? {
                if p.has("state") {
                    println!("{} {}", g.group_id, g.state);
                } else {
                    println!("{}", g.group_id);
                }
            }
        }
        "describe" => describe(&groups, &Admin::new(cluster), p.required("group")?).await?,
        "delete" => {
            let group = p.required("group")?;
            groups
                .delete(group)
                .await
                .map_err(|e| CliError::new(format!("cannot delete group {group}: {e}")))?;
            println!("Deleted group {group}.");
        }
        "reset-offsets" => {
            let group = p.required("group")?;
            let topic = p.required("topic")?;
            let spec = ResetSpec::from_args(&p)?;
            if p.has("dry-run") && p.has("execute") {
                return Err(CliError::new("give --dry-run or --execute, not both"));
            }
            let desc = groups.describe(group).await?;
            if !desc.members.is_empty() {
                return Err(CliError::new(format!(
                    "group {group} has {} active member(s) (state {}): offsets can only be reset while it is inactive",
                    desc.members.len(),
                    desc.state
                )));
            }
            let admin = Admin::new(cluster.clone());
            let bounds = admin.partition_offsets(topic).await?;
            let partitions: Vec<i32> = bounds.keys().copied().collect();
            let current = groups.committed(group, Some((topic, &partitions))).await?;
            let by_time = match spec {
                ResetSpec::ToDatetime(ts) => {
                    let q: Vec<(String, i32, i64)> = partitions
                        .iter()
                        .map(|p| (topic.to_string(), *p, ts))
                        .collect();
                    list_offsets(&cluster, &q).await?
                }
                _ => BTreeMap::new(),
            };
            let mut target = BTreeMap::new();
            for (&partition, &(start, end)) in &bounds {
                let committed = current.get(&(topic.to_string(), partition)).copied();
                let wanted = match spec {
                    ResetSpec::ToEarliest => start,
                    ResetSpec::ToLatest => end,
                    ResetSpec::ToOffset(n) => n,
                    ResetSpec::ShiftBy(n) => committed.unwrap_or(end).saturating_add(n),
                    ResetSpec::ToDatetime(_) => {
                        match by_time.get(&(topic.to_string(), partition)) {
                            Some(&(o, _)) if o >= 0 => o,
                            _ => end,
                        }
                    }
                };
                // As Kafka's tool: an offset outside the log is clamped into it.
                target.insert(partition, wanted.clamp(start, end));
            }
            println!(
                "{:<24} {:<24} {:>9} {:>12}",
                "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
            );
            for (partition, offset) in &target {
                println!("{group:<24} {topic:<24} {partition:>9} {offset:>12}");
            }
            if p.has("execute") {
                groups.commit(group, topic, &target).await.map_err(|e| {
                    CliError::new(format!("cannot reset offsets of group {group}: {e}"))
                })?;
            } else {
                eprintln!("(dry run: nothing changed; add --execute to apply)");
            }
        }
        _ => unreachable!("exactly one action was checked above"),
    }
    Ok(())
}

async fn describe(groups: &GroupAdmin, admin: &Admin, group: &str) -> Result<(), CliError> {
    let desc = groups.describe(group).await?;
    let committed = groups.committed(group, None).await?;
    // Who owns each partition now.
    let mut owner: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &desc.members {
        for (t, ps) in &m.assignment {
            for p in ps {
                owner.insert(
                    (t.clone(), *p),
                    (
                        m.member_id.clone(),
                        m.client_host.clone(),
                        m.client_id.clone(),
                    ),
                );
            }
        }
    }
    let mut rows: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    rows.extend(owner.keys().cloned());
    let topics: BTreeSet<String> = rows.iter().map(|(t, _)| t.clone()).collect();
    let mut ends = BTreeMap::new();
    for t in &topics {
        if let Ok(bounds) = admin.partition_offsets(t).await {
            for (p, (_, end)) in bounds {
                ends.insert((t.clone(), p), end);
            }
        }
    }
    println!(
        "Group {group} is {} ({} member(s), protocol {:?}).",
        desc.state,
        desc.members.len(),
        desc.protocol
    );
    println!(
        "{:<24} {:<24} {:>9} {:>14} {:>14} {:>8} {:<40} {:<16} CLIENT-ID",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST"
    );
    let dash = "-".to_string();
    for key in &rows {
        let current = committed.get(key).copied();
        let end = ends.get(key).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => dash.clone(),
        };
        let (consumer, host, client) =
            owner
                .get(key)
                .cloned()
                .unwrap_or((dash.clone(), dash.clone(), dash.clone()));
        println!(
            "{:<24} {:<24} {:>9} {:>14} {:>14} {:>8} {:<40} {:<16} {}",
            group,
            key.0,
            key.1,
            current.map_or(dash.clone(), |c| c.to_string()),
            end.map_or(dash.clone(), |e| e.to_string()),
            lag,
            consumer,
            host,
            client
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetSpec {
    ToEarliest,
    ToLatest,
    ToOffset(i64),
    ShiftBy(i64),
    /// Milliseconds since the epoch.
    ToDatetime(i64),
}

impl ResetSpec {
    fn from_args(p: &super::args::Parsed) -> Result<ResetSpec, CliError> {
        let mut specs = Vec::new();
        if p.has("to-earliest") {
            specs.push(ResetSpec::ToEarliest);
        }
        if p.has("to-latest") {
            specs.push(ResetSpec::ToLatest);
        }
        if let Some(v) = p.value("to-offset") {
            specs.push(ResetSpec::ToOffset(parse_i64("--to-offset", v)?));
        }
        if let Some(v) = p.value("shift-by") {
            specs.push(ResetSpec::ShiftBy(parse_i64("--shift-by", v)?));
        }
        if let Some(v) = p.value("to-datetime") {
            let ms = parse_datetime_ms(v).ok_or_else(|| {
                CliError::new(format!(
                    "--to-datetime {v}: expected YYYY-MM-DDTHH:MM:SS[.sss] (UTC) or epoch milliseconds"
                ))
            })?;
            specs.push(ResetSpec::ToDatetime(ms));
        }
        match specs.as_slice() {
            [one] => Ok(*one),
            _ => Err(CliError::new(
                "give exactly one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime",
            )),
        }
    }
}

fn parse_i64(flag: &str, v: &str) -> Result<i64, CliError> {
    v.parse()
        .map_err(|_| CliError::new(format!("{flag} {v}: not an integer")))
}

/// `YYYY-MM-DDTHH:MM:SS[.sss][Z]` in UTC, or plain epoch milliseconds.
fn parse_datetime_ms(v: &str) -> Option<i64> {
    if let Ok(ms) = v.parse::<i64>() {
        return Some(ms);
    }
    let v = v.strip_suffix('Z').unwrap_or(v);
    let (date, time) = v.split_once('T')?;
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, b),
        None => (time, "0"),
    };
    let mut t = hms.split(':');
    let (h, mi, s): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next().unwrap_or("0").parse().ok()?,
    );
    if t.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            parse_datetime_ms("1970-01-02T00:00:01.5Z"),
            Some(86_401_500)
        );
        // date -u -d 2024-02-29T12:34:56 +%s -> 1709210096
        assert_eq!(
            parse_datetime_ms("2024-02-29T12:34:56.789"),
            Some(1_709_210_096_789)
        );
        assert_eq!(parse_datetime_ms("1234"), Some(1234));
        assert_eq!(parse_datetime_ms("2024-13-01T00:00:00"), None);
        assert_eq!(parse_datetime_ms("yesterday"), None);
    }
}
