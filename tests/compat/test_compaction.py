"""Log management seen by real clients: a compacted topic (latest value per
key, tombstones gone after delete.retention.ms), time retention dropping old
segments (OFFSET_OUT_OF_RANGE and auto.offset.reset), and DeleteRecords via
confluent-kafka's AdminClient. The broker runs with a fast maintenance
schedule from a config file (`weir server --config FILE`)."""

import os
import tempfile
import time
import unittest
import uuid

import confluent_kafka
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
import kafka
import kafka.errors

from harness import Broker, BrokerTestCase

# Maintenance every 200 ms: retention checks and cleaner scans.
FAST_MAINTENANCE = "log.retention.check.interval.ms=200\nlog.cleaner.backoff.ms=200\n"


def topic_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class LogManagement(BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        fd, cls.config_path = tempfile.mkstemp(prefix="weir-compat-", suffix=".properties")
        with os.fdopen(fd, "w") as f:
            f.write(FAST_MAINTENANCE)
        cls.broker = Broker(extra_args=["--config", cls.config_path]).start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            os.remove(cls.config_path)

    def producer(self):
        return confluent_kafka.Producer(
            {"bootstrap.servers": self.bootstrap, "linger.ms": 0, "acks": "all"}
        )

    def produce(self, p, topic, key, value):
        errors = []
        p.produce(topic, key=key, value=value, partition=0,
                  on_delivery=lambda err, _m: err and errors.append(err))
        p.flush(30)
        self.assertEqual(errors, [])

    def read_kafka_python(self, topic):
        """(offset, key, value) of every record from the beginning."""
        c = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", consumer_timeout_ms=3000)
        tp = kafka.TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out = [(m.offset, m.key, m.value) for m in c]
        c.close()
        return out

    def read_kcat(self, topic):
        out = self.kcat("-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
                        "-Z", "-f", "%o|%k|%S\n")
        rows = []
        for line in out.decode().splitlines():
            off, key, size = line.split("|")
            rows.append((int(off), key, int(size)))
        return rows

    def wait_until(self, what, pred, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = pred()
            if got:
                return got
            time.sleep(0.3)
        self.fail(f"timed out waiting for {what}")

    def test_compacted_topic_keeps_the_latest_value_per_key(self):
        t = topic_name("compact")
        self.create_topic(t, configs=[
            "cleanup.policy=compact", "segment.bytes=4096", "segment.ms=300",
            "min.cleanable.dirty.ratio=0.01", "delete.retention.ms=1500",
        ])
        p = self.producer()
        keys = [f"key-{i}".encode() for i in range(5)]
        latest = {}
        # Written once and never again: it survives at offset 0, ahead of
        # the gap the cleaner leaves.
        self.produce(p, t, b"sticky", b"only")
        produced = 1
        for round_ in range(60):
            for k in keys:
                v = f"{k.decode()}-v{round_}-{'x' * 40}".encode()
                self.produce(p, t, k, v)
                latest[k] = v
                produced += 1
        # Tombstones for two keys.
        for k in keys[:2]:
            self.produce(p, t, k, None)
            latest[k] = None
            produced += 1
        # Let segment.ms pass, then append once more so the active segment
        # (holding the tombstones) rolls and becomes cleanable.
        time.sleep(0.5)
        self.produce(p, t, b"roll", b"1")
        produced += 1

        def compacted():
            rows = self.read_kafka_python(t)
            return rows if len(rows) < produced / 4 else None

        rows = self.wait_until("the cleaner to compact", compacted)
        offsets = [r[0] for r in rows]
        self.assertEqual(offsets, sorted(set(offsets)), "offsets strictly increasing")
        self.assertTrue(any(b - a > 1 for a, b in zip(offsets, offsets[1:])), "gaps after compaction")
        self.assertEqual(rows[0][:2], (0, b"sticky"))
        last = {}
        for _off, k, v in rows:
            last[k] = v
        for k in keys[2:]:
            self.assertEqual(last[k], latest[k], k)

        # Past delete.retention.ms, another pass (more dirty data, one more
        # roll) drops the tombstones and the deleted keys vanish.
        time.sleep(2.0)
        for k in keys[2:]:
            self.produce(p, t, k, latest[k])
        time.sleep(0.5)
        self.produce(p, t, b"roll", b"2")

        def tombstones_gone():
            # ... and the second pass done: each live key appears once.
            rows = self.read_kafka_python(t)
            ks = [k for _o, k, _v in rows]
            done = not (set(ks) & set(keys[:2])) and all(ks.count(k) == 1 for k in keys[2:])
            return rows if done else None

        rows = self.wait_until("tombstones to expire", tombstones_gone)
        last = {}
        for _off, k, v in rows:
            last[k] = v
        for k in keys[2:]:
            self.assertEqual(last[k], latest[k], k)
        self.assertEqual(last[b"roll"], b"2")

        # kcat reads the same compacted log.
        kc = self.read_kcat(t)
        self.assertEqual([r[0] for r in kc], [r[0] for r in rows])
        self.assertNotIn("key-0", {r[1] for r in kc})
        self.assertNotIn("key-1", {r[1] for r in kc})

    def test_time_retention_drops_old_segments_and_consumers_reset(self):
        t = topic_name("retention")
        self.create_topic(t, configs=["retention.ms=1000", "segment.bytes=2048", "segment.ms=200"])
        p = self.producer()
        for i in range(100):
            self.produce(p, t, b"k", f"old-{i:03}-{'y' * 40}".encode())
        time.sleep(1.5)
        self.produce(p, t, b"k", b"fresh")  # rolls the aged active segment

        admin = AdminClient({"bootstrap.servers": self.bootstrap})

        def low_watermark():
            c = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": "wm"})
            lo, hi = c.get_watermark_offsets(TopicPartition(t, 0), timeout=10)
            c.close()
            # Every old segment goes, down to the one holding "fresh".
            return lo if lo == 100 else None

        start = self.wait_until("retention to delete segments", low_watermark)

        # Seeking below the log start: OFFSET_OUT_OF_RANGE, then
        # auto.offset.reset=earliest moves to the new log start.
        c = confluent_kafka.Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": "unused-assign-only",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        })
        c.assign([TopicPartition(t, 0, 0)])
        first = None
        deadline = time.time() + 20
        while first is None and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                first = m
        c.close()
        self.assertIsNotNone(first)
        self.assertEqual(first.offset(), start)

        # With auto.offset.reset=error the client reports the out-of-range.
        c = confluent_kafka.Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": "unused-assign-only",
            "enable.auto.commit": False, "auto.offset.reset": "error",
        })
        c.assign([TopicPartition(t, 0, 0)])
        err = None
        deadline = time.time() + 20
        while err is None and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is not None:
                err = m.error()
        c.close()
        self.assertIsNotNone(err)
        self.assertEqual(err.code(), KafkaError._AUTO_OFFSET_RESET, err)

        # kafka-python: earliest lands on the log start too.
        rows = self.read_kafka_python(t)
        self.assertEqual(rows[0][0], start)
        self.assertEqual(rows[-1][2], b"fresh")

        # DeleteRecords through the AdminClient (confluent-kafka >= 2.4)
        # moves the log start again.
        end = rows[-1][0]
        fs = admin.delete_records([TopicPartition(t, 0, end)])
        for _tp, f in fs.items():
            self.assertEqual(f.result(timeout=10).low_watermark, end)
        rows = self.read_kafka_python(t)
        self.assertEqual([r[0] for r in rows], [end])


if __name__ == "__main__":
    unittest.main()
