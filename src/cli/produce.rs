//! `weir produce`: like kafka-console-producer.sh, one record per stdin line.

use std::collections::VecDeque;
use std::io::BufRead;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::args::{parse, CliError, Kind};
use super::help_requested;
use crate::client::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};

pub const USAGE: &str = "\
usage: weir produce --bootstrap-server HOST:PORT --topic NAME [options] < lines

Sends one record per line of stdin, waits for every acknowledgement, and
exits non-zero if any record failed.

options:
  --property parse.key=true       split each line into key and value
  --property key.separator=SEP    key/value separator (default: tab)
  --producer-property k=v         producer setting (acks, linger.ms, batch.size,
                                  compression.type, enable.idempotence, ...), repeatable
  --partition N                   send every record to partition N";

const SPEC: &[(&str, Kind)] = &[
    ("bootstrap-server", Kind::Value),
    ("topic", Kind::Value),
    ("property", Kind::Multi),
    ("producer-property", Kind::Multi),
    ("partition", Kind::Value),
];

/// Unacknowledged records allowed before reading more input.
const PENDING_RECORDS_MAX: usize = 100_000;

pub async fn run(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let bootstrap = p.required("bootstrap-server")?;
    let topic = p.required("topic")?.to_string();
    let mut parse_key = false;
    let mut separator = "\t".to_string();
    for (k, v) in p.pairs("property")? {
        match k.as_str() {
            "parse.key" => parse_key = v == "true",
            "key.separator" => separator = v,
            "ignore.error" | "parse.headers" => {}
            other => return Err(CliError::new(format!("unknown --property {other}"))),
        }
    }
    let mut config = ProducerConfig::default();
    for (k, v) in p.pairs("producer-property")? {
        config.set(&k, &v)?;
    }
    config.validate()?;
    let partition: Option<i32> = match p.value("partition") {
        Some(v) => Some(
            v.parse()
                .map_err(|_| CliError::new(format!("--partition expects a number, got '{v}'")))?,
        ),
        None => None,
    };
    let producer = Producer::connect(bootstrap, config).await?;

    let mut lines = spawn_stdin_reader();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut line_no = 0u64;
    while let Some(chunk) = lines.recv().await {
        for line in chunk? {
            line_no += 1;
            let mut record = if parse_key {
                let (k, v) = line.split_once(separator.as_str()).ok_or_else(|| {
                    CliError::new(format!("line {line_no} has no key separator '{separator}'"))
                })?;
                ProducerRecord::new(topic.clone(), Bytes::from(v.to_string()))
                    .with_key(Bytes::from(k.to_string()))
            } else {
                ProducerRecord::new(topic.clone(), Bytes::from(line))
            };
            record.partition = partition;
            pending.push_back(producer.send(record).await?);
            while pending.len() > PENDING_RECORDS_MAX {
                let f = pending.pop_front().expect("pending is not empty");
                f.await?;
            }
        }
    }
    producer.flush().await;
    for f in pending {
        f.await?;
    }
    producer.close().await;
    Ok(())
}

/// Read stdin on a blocking thread (tokio's io-std is not enabled) and hand
/// lines over in chunks. madsim deprecates blocking tasks; the simulator
/// never runs the CLI (it drives `weir::client` directly), so the warning is
/// silenced in that build only.
#[cfg_attr(madsim, allow(deprecated))]
fn spawn_stdin_reader() -> mpsc::Receiver<Result<Vec<String>, CliError>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        let mut chunk = Vec::new();
        for line in stdin.lock().lines() {
            match line {
                Ok(mut l) => {
                    if l.ends_with('\r') {
                        l.pop();
                    }
                    chunk.push(l);
                    if chunk.len() >= 1024
                        && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(CliError::new(format!("reading stdin: {e}"))));
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    });
    rx
}
