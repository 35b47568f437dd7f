//! `weir perf produce|consume`: load tests after kafka-producer-perf-test and
//! kafka-consumer-perf-test. The final line is machine-parseable.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::args::{parse, CliError, Kind};
use super::help_requested;
use crate::client::{
    Consumer, ConsumerConfig, DeliveryFuture, Producer, ProducerConfig, ProducerRecord,
};
use crate::env::rng::WeirRng;
use crate::env::time::{now, sleep_until, Duration, Instant};

pub const USAGE: &str = "\
usage: weir perf produce --bootstrap-server HOST:PORT --topic NAME --num-records N
                         --record-size S [--throughput R] [--acks 0|1|all]
                         [--producer-property k=v]...
       weir perf consume --bootstrap-server HOST:PORT --topic NAME --num-records N
                         [--timeout-ms N] [--consumer-property k=v]...

produce: sends N records of S bytes (R records/s, -1 = unlimited) and prints
  throughput every 5 s, then one final line:
  N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
  P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.
consume: reads N records from the beginning of every partition, then prints:
  N records received, X records/sec (Y MB/sec), T ms elapsed.";

const PRODUCE_SPEC: &[(&str, Kind)] = &[
    ("bootstrap-server", Kind::Value),
    ("topic", Kind::Value),
    ("num-records", Kind::Value),
    ("record-size", Kind::Value),
    ("throughput", Kind::Value),
    ("acks", Kind::Value),
    ("producer-property", Kind::Multi),
];

const CONSUME_SPEC: &[(&str, Kind)] = &[
    ("bootstrap-server", Kind::Value),
    ("topic", Kind::Value),
    ("num-records", Kind::Value),
    ("timeout-ms", Kind::Value),
    ("consumer-property", Kind::Multi),
];

const MB: f64 = 1024.0 * 1024.0;

pub async fn run(args: &[String]) -> Result<(), CliError> {
    match args.first().map(|s| s.as_str()) {
        Some("produce") => produce(&args[1..]).await,
        Some("consume") => consume(&args[1..]).await,
        Some("--help") | Some("-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(CliError::new(format!(
            "unknown perf test '{other}' (produce or consume)"
        ))),
        None => Err(CliError::new("perf needs a test: produce or consume")),
    }
}

/// Latency statistics in microseconds.
#[derive(Debug, Default)]
pub struct Latencies {
    samples: Vec<u32>,
    sum: u64,
}

impl Latencies {
    pub fn record(&mut self, micros: u64) {
        let v = micros.min(u32::MAX as u64) as u32;
        self.samples.push(v);
        self.sum += v as u64;
    }

    pub fn count(&self) -> usize {
        self.samples.len()
    }

    pub fn avg_ms(&self) -> f64 {
        if self.samples.is_empty() {
            0.0
        } else {
            self.sum as f64 / self.samples.len() as f64 / 1000.0
        }
    }

    /// `q`-quantile in ms (nearest rank), e.g. 0.99.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.samples.sort_unstable();
        let rank = ((q * self.samples.len() as f64).ceil() as usize).clamp(1, self.samples.len());
        self.samples[rank - 1] as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.samples.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}

struct Window {
    start: Instant,
    records: u64,
    latency_sum_us: u64,
    latency_max_us: u64,
}

async fn produce(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, PRODUCE_SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let bootstrap = p.required("bootstrap-server")?;
    let topic = p.required("topic")?.to_string();
    let num_records: u64 = p
        .required("num-records")
        .and_then(|_| p.number("num-records", 0))?;
    let record_size: usize = p
        .required("record-size")
        .and_then(|_| p.number("record-size", 0))?;
    let throughput: f64 = p.number("throughput", -1.0)?;
    let mut config = ProducerConfig::default();
    if let Some(acks) = p.value("acks") {
        config.set("acks", acks)?;
    }
    for (k, v) in p.pairs("producer-property")? {
        config.set(&k, &v)?;
    }
    config.validate()?;
    let producer = Producer::connect(bootstrap, config).await?;

    // One random payload, shared by every record (a cheap Bytes clone).
    let mut rng = WeirRng::from_env();
    let payload: Bytes = (0..record_size)
        .map(|_| b'A' + rng.range_u64(0, 26) as u8)
        .collect::<Vec<u8>>()
        .into();

    // A collector awaits acknowledgements in send order and records latency
    // from send to the batch's completion instant.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
    let collector = tokio::spawn(async move {
        let mut lat = Latencies::default();
        let mut errors = 0u64;
        let mut first_error = None;
        let mut window = Window {
            start: now(),
            records: 0,
            latency_sum_us: 0,
            latency_max_us: 0,
        };
        while let Some((sent, fut)) = rx.recv().await {
            let (result, done_at) = fut.wait_timed().await;
            match result {
                Ok(_) => {
                    let us = done_at.saturating_duration_since(sent).as_micros() as u64;
                    lat.record(us);
                    window.records += 1;
                    window.latency_sum_us += us;
                    window.latency_max_us = window.latency_max_us.max(us);
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            let elapsed = now().saturating_duration_since(window.start);
            if elapsed >= Duration::from_secs(5) {
                let secs = elapsed.as_secs_f64();
                let rate = window.records as f64 / secs;
                println!(
                    "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
                    window.records,
                    rate,
                    rate * record_size as f64 / MB,
                    window.latency_sum_us as f64 / window.records.max(1) as f64 / 1000.0,
                    window.latency_max_us as f64 / 1000.0
                );
                window = Window {
                    start: now(),
                    records: 0,
                    latency_sum_us: 0,
                    latency_max_us: 0,
                };
            }
        }
        (lat, errors, first_error)
    });

    let start = now();
    for i in 0..num_records {
        if throughput > 0.0 {
            // Throttle: record i is due at start + i / throughput.
            let due = start + Duration::from_secs_f64(i as f64 / throughput);
            if due > now() {
                sleep_until(due).await;
            }
        }
        let sent = now();
        let fut = producer
            .send(ProducerRecord {
                topic: topic.clone(),
                value: Some(payload.clone()),
                ..Default::default()
            })
            .await?;
        let _ = tx.send((sent, fut));
    }
    drop(tx);
    producer.flush().await;
    let (mut lat, errors, first_error) = collector
        .await
        .map_err(|e| CliError::new(format!("collector task failed: {e}")))?;
    let elapsed = now()
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    producer.close().await;
    let ok = lat.count() as u64;
    let rate = ok as f64 / elapsed;
    println!(
        "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
        ok,
        rate,
        rate * record_size as f64 / MB,
        lat.avg_ms(),
        lat.max_ms(),
        lat.quantile_ms(0.50),
        lat.quantile_ms(0.95),
        lat.quantile_ms(0.99),
        lat.quantile_ms(0.999),
    );
    if errors > 0 {
        return Err(CliError::new(format!(
            "{errors} of {num_records} records failed; first error: {}",
            first_error.map(|e| e.to_string()).unwrap_or_default()
        )));
    }
    Ok(())
}

async fn consume(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, CONSUME_SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let bootstrap = p.required("bootstrap-server")?;
    let topic = p.required("topic")?.to_string();
    let num_records: u64 = p
        .required("num-records")
        .and_then(|_| p.number("num-records", 0))?;
    let idle_timeout = Duration::from_millis(p.number("timeout-ms", 10_000u64)?);
    let mut config = ConsumerConfig::default();
    for (k, v) in p.pairs("consumer-property")? {
        config.set(&k, &v)?;
    }
    let mut consumer = Consumer::connect(bootstrap, config).await?;
    let tps = consumer.assign_topic(&topic).await?;
    consumer.seek_to_beginning(&tps).await?;
    let start = now();
    let mut last = start;
    let mut records = 0u64;
    let mut bytes = 0u64;
    while records < num_records {
        let batch = consumer.poll(Duration::from_millis(200)).await?;
        if batch.is_empty() {
            if now().saturating_duration_since(last) >= idle_timeout {
                break;
            }
            continue;
        }
        last = now();
        for r in &batch {
            bytes += r.value.as_ref().map_or(0, |v| v.len()) as u64
                + r.key.as_ref().map_or(0, |k| k.len()) as u64;
        }
        records += batch.len() as u64;
    }
    let elapsed = last
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    println!(
        "{} records received, {:.1} records/sec ({:.2} MB/sec), {:.0} ms elapsed.",
        records,
        records as f64 / elapsed,
        bytes as f64 / MB / elapsed,
        elapsed * 1000.0
    );
    if records < num_records {
        return Err(CliError::new(format!(
            "only {records} of {num_records} records arrived before the {} ms timeout",
            idle_timeout.as_millis()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Latencies;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=100u64 {
            l.record(ms * 1000);
        }
        assert_eq!(l.quantile_ms(0.5), 50.0);
        assert_eq!(l.quantile_ms(0.99), 99.0);
        assert_eq!(l.quantile_ms(0.999), 100.0);
        assert_eq!(l.max_ms(), 100.0);
        assert!((l.avg_ms() - 50.5).abs() < 1e-9);
    }
}
