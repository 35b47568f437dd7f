//! `weir consume`: like kafka-console-consumer.sh. Without --group it
//! assigns partitions itself; with --group it is a member of that consumer
//! group and commits what it printed (or, with --enable-auto-commit, its
//! positions every auto.commit.interval.ms and before giving partitions up).

use std::collections::BTreeMap;
use std::io::Write;

use super::args::{parse, CliError, Kind};
use super::help_requested;
use crate::client::group::{GroupConfig, GroupConsumer};
use crate::client::{Consumer, ConsumerConfig, ConsumerRecord};
use crate::env::time::{now, Duration};

pub const USAGE: &str = "\
usage: weir consume --bootstrap-server HOST:PORT --topic NAME [options]

Prints each record's value (and optionally key, timestamp, partition,
offset) on its own line. Without --partition it reads every partition,
from the end, or from the beginning with --from-beginning.

options:
  --group G                     consume as a member of group G: start at its
                                committed offsets, commit what was printed
  --from-beginning              start at the earliest offset (with --group:
                                where the group has no committed offset)
  --assignor LIST               with --group: partition.assignment.strategy,
                                comma separated, preferred first: range,
                                roundrobin, sticky, cooperative-sticky
                                (default: range,cooperative-sticky)
  --enable-auto-commit          with --group: commit positions every
                                auto.commit.interval.ms (set it with
                                --consumer-property) instead of after each
                                printed batch
  --auto-offset-reset R         with --group: where to start partitions the
                                group never committed: earliest, latest or
                                none (none: exit with an error)
  --partition P                 read only partition P
  --offset O                    with --partition: start at O (a number, earliest or latest)
  --max-messages N              exit after N records
  --timeout-ms N                exit when no record arrives for N ms
  --property print.key=true     also print the key
  --property print.timestamp=true
  --property print.partition=true
  --property print.offset=true
  --property print.value=false
  --property key.separator=SEP  field separator (default: tab)
  --consumer-property k=v       consumer setting (fetch.max.wait.ms, and with
                                --group session.timeout.ms, ...), repeatable";

const SPEC: &[(&str, Kind)] = &[
    ("group", Kind::Value),
    ("bootstrap-server", Kind::Value),
    ("topic", Kind::Value),
    ("from-beginning", Kind::Switch),
    ("assignor", Kind::Value),
    ("enable-auto-commit", Kind::Switch),
    ("auto-offset-reset", Kind::Value),
    ("partition", Kind::Value),
    ("offset", Kind::Value),
    ("max-messages", Kind::Value),
    ("timeout-ms", Kind::Value),
    ("property", Kind::Multi),
    ("consumer-property", Kind::Multi),
];

#[derive(Debug, Clone)]
struct Format {
    key: bool,
    timestamp: bool,
    partition: bool,
    offset: bool,
    value: bool,
    separator: String,
}

fn parse_format(pairs: Vec<(String, String)>) -> Result<Format, CliError> {
    let mut f = Format {
        key: false,
        timestamp: false,
        partition: false,
        offset: false,
        value: true,
        separator: "\t".to_string(),
    };
    for (k, v) in pairs {
        let flag = || -> Result<bool, CliError> {
            match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(CliError::new(format!(
                    "--property {k} expects true or false, got '{other}'"
                ))),
            }
        };
        match k.as_str() {
            "print.key" => f.key = flag()?,
            "print.timestamp" => f.timestamp = flag()?,
            "print.partition" => f.partition = flag()?,
            "print.offset" => f.offset = flag()?,
            "print.value" => f.value = flag()?,
            "key.separator" => f.separator = v,
            other => return Err(CliError::new(format!("unknown --property {other}"))),
        }
    }
    Ok(f)
}

fn write_record(out: &mut impl Write, f: &Format, r: &ConsumerRecord) -> std::io::Result<()> {
    if f.timestamp {
        let kind = match r.timestamp_type {
            kafka_protocol::records::TimestampType::Creation => "CreateTime",
            kafka_protocol::records::TimestampType::LogAppend => "LogAppendTime",
        };
        write!(out, "{kind}:{}{}", r.timestamp, f.separator)?;
    }
    if f.partition {
        write!(out, "Partition:{}{}", r.partition, f.separator)?;
    }
    if f.offset {
        write!(out, "Offset:{}{}", r.offset, f.separator)?;
    }
    if f.key {
        match &r.key {
            Some(k) => out.write_all(k)?,
            None => out.write_all(b"null")?,
        }
        if f.value {
            out.write_all(f.separator.as_bytes())?;
        }
    }
    if f.value {
        match &r.value {
            Some(v) => out.write_all(v)?,
            None => out.write_all(b"null")?,
        }
    }
    out.write_all(b"\n")
}

pub async fn run(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let bootstrap = p.required("bootstrap-server")?;
    let topic = p.required("topic")?.to_string();
    let format = parse_format(p.pairs("property")?)?;
    let max_messages: Option<u64> = match p.value("max-messages") {
        Some(_) => Some(p.number("max-messages", 0)?),
        None => None,
    };
    let idle_timeout: Option<Duration> = match p.value("timeout-ms") {
        Some(_) => Some(Duration::from_millis(p.number("timeout-ms", 0)?)),
        None => None,
    };
    if p.has("offset") && !p.has("partition") {
        return Err(CliError::new("--offset needs --partition"));
    }
    if p.has("offset") && p.has("from-beginning") {
        return Err(CliError::new(
            "--offset and --from-beginning exclude each other",
        ));
    }
    if p.value("group").is_none() {
        for flag in ["assignor", "enable-auto-commit", "auto-offset-reset"] {
            if p.has(flag) {
                return Err(CliError::new(format!("--{flag} needs --group")));
            }
        }
    }
    if let Some(group) = p.value("group") {
        if p.has("partition") || p.has("offset") {
            return Err(CliError::new(
                "--group excludes --partition and --offset (the group assigns partitions)",
            ));
        }
        let config = group_config(&p, group)?;
        let mut cc = crate::client::ClientConfig::new(bootstrap);
        cc.connection.client_id = config.consumer.client_id.clone();
        let cluster = crate::client::Cluster::connect(cc).await?;
        let member =
            GroupConsumer::subscribe(cluster, config, std::slice::from_ref(&topic)).await?;
        return print_loop(
            Source::Group(Box::new(member)),
            &format,
            max_messages,
            idle_timeout,
        )
        .await;
    }
    let mut config = ConsumerConfig::default();
    for (k, v) in p.pairs("consumer-property")? {
        config.set(&k, &v)?;
    }
    let mut consumer = Consumer::connect(bootstrap, config).await?;
    let tps = match p.value("partition") {
        Some(_) => {
            let partition: i32 = p.number("partition", 0)?;
            let info = consumer.cluster().topic(&topic).await?;
            if !info.partitions.iter().any(|x| x.partition == partition) {
                return Err(CliError::new(format!(
                    "topic {topic} has no partition {partition}"
                )));
            }
            let tp = (topic.clone(), partition);
            consumer.assign(std::slice::from_ref(&tp));
            vec![tp]
        }
        None => consumer.assign_topic(&topic).await?,
    };
    match p.value("offset") {
        Some("earliest") => consumer.seek_to_beginning(&tps).await?,
        Some("latest") => consumer.seek_to_end(&tps).await?,
        Some(o) => {
            let offset: i64 = o.parse().map_err(|_| {
                CliError::new(format!(
                    "--offset expects a number, earliest or latest, got '{o}'"
                ))
            })?;
            consumer.seek(&tps[0], offset)?;
        }
        None if p.has("from-beginning") => consumer.seek_to_beginning(&tps).await?,
        None => consumer.seek_to_end(&tps).await?,
    }
    print_loop(Source::Plain(consumer), &format, max_messages, idle_timeout).await
}

/// The group member's settings from the flags. Unless --enable-auto-commit
/// is given, the member commits exactly what it printed (after each batch).
fn group_config(p: &super::args::Parsed, group: &str) -> Result<GroupConfig, CliError> {
    let mut config = GroupConfig::new(group);
    config.enable_auto_commit = false;
    if p.has("from-beginning") {
        config.set("auto.offset.reset", "earliest")?;
    }
    for (k, v) in p.pairs("consumer-property")? {
        config.set(&k, &v)?;
    }
    if let Some(reset) = p.value("auto-offset-reset") {
        if p.has("from-beginning") && reset != "earliest" {
            return Err(CliError::new(format!(
                "--from-beginning contradicts --auto-offset-reset {reset}"
            )));
        }
        config.set("auto.offset.reset", reset)?;
    }
    if let Some(list) = p.value("assignor") {
        config.set_assignors(list)?;
    }
    if p.has("enable-auto-commit") {
        config.enable_auto_commit = true;
    }
    Ok(config)
}

/// Where records come from: a self-assigned consumer or a group member.
enum Source {
    Plain(Consumer),
    Group(Box<GroupConsumer>),
}

impl Source {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<ConsumerRecord>, CliError> {
        Ok(match self {
            Source::Plain(c) => c.poll(wait).await?,
            Source::Group(g) => g.poll(wait).await?,
        })
    }

    /// Record progress: a group member commits what was printed (and only
    /// that, so records cut by --max-messages are read by the next member).
    async fn printed(
        &mut self,
        next: &BTreeMap<(String, i32), i64>,
        auto_commit: bool,
    ) -> Result<(), CliError> {
        if let Source::Group(g) = self {
            if !next.is_empty() && !auto_commit {
                g.commit_sync(next).await?;
            }
        }
        Ok(())
    }

    fn auto_commit(&self) -> bool {
        matches!(self, Source::Group(g) if g.auto_commit())
    }

    async fn close(self) -> Result<(), CliError> {
        if let Source::Group(g) = self {
            // With auto-commit this commits the positions; otherwise
            // everything printed is already committed.
            g.close().await?;
        }
        Ok(())
    }
}

async fn print_loop(
    mut consumer: Source,
    format: &Format,
    max_messages: Option<u64>,
    idle_timeout: Option<Duration>,
) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut seen = 0u64;
    let mut last_record = now();
    let shutdown = crate::env::signal::shutdown_requested();
    tokio::pin!(shutdown);
    'outer: loop {
        if max_messages.is_some_and(|m| seen >= m) {
            break;
        }
        let wait = match idle_timeout {
            Some(t) => {
                let left = t.saturating_sub(now().saturating_duration_since(last_record));
                if left.is_zero() {
                    break;
                }
                left.min(Duration::from_millis(500))
            }
            None => Duration::from_millis(500),
        };
        let records = tokio::select! {
            r = consumer.poll(wait) => r?,
            _ = &mut shutdown => break,
        };
        if records.is_empty() {
            continue;
        }
        last_record = now();
        let mut next = BTreeMap::new();
        let mut out = stdout.lock();
        for r in &records {
            if max_messages.is_some_and(|m| seen >= m) {
                break;
            }
            if let Err(e) = write_record(&mut out, format, r) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    break 'outer;
                }
                return Err(CliError::new(format!("writing stdout: {e}")));
            }
            seen += 1;
            next.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        if let Err(e) = out.flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(CliError::new(format!("writing stdout: {e}")));
        }
        drop(out);
        let auto_commit = consumer.auto_commit();
        consumer.printed(&next, auto_commit).await?;
    }
    consumer.close().await?;
    eprintln!("Processed a total of {seen} messages");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn formats_like_the_console_consumer() {
        let f = parse_format(vec![
            ("print.key".into(), "true".into()),
            ("print.timestamp".into(), "true".into()),
            ("print.partition".into(), "true".into()),
            ("print.offset".into(), "true".into()),
            ("key.separator".into(), ":".into()),
        ])
        .unwrap();
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 99,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        let mut out = Vec::new();
        write_record(&mut out, &f, &r).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CreateTime:99:Partition:2:Offset:7:k:v\n"
        );
        assert!(parse_format(vec![("print.key".into(), "yes".into())]).is_err());
        assert!(parse_format(vec![("nope".into(), "1".into())]).is_err());
    }
}
