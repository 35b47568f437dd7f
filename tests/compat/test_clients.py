"""Real Kafka clients against a real `weir server`: kcat (librdkafka 2.0),
confluent-kafka (librdkafka 2.16) and kafka-python 3. Each test asserts what a
user of that client would notice."""

import os
import random
import time
import unittest
import uuid

import confluent_kafka
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource
import kafka
import kafka.errors
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from harness import BrokerTestCase, kafka_partition, murmur2

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def topic_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Murmur2Reference(unittest.TestCase):
    def test_our_reference_matches_kafka_python(self):
        rng = random.Random(42)
        for n in range(200):
            key = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            self.assertEqual(murmur2(key), kafka_python_murmur2(key) & 0xFFFFFFFF, key)


class Clients(BrokerTestCase):
    def confluent_producer(self, **extra):
        conf = {"bootstrap.servers": self.bootstrap, "linger.ms": 5}
        conf.update({k.replace("_", "."): v for k, v in extra.items()})
        return confluent_kafka.Producer(conf)

    def confluent_consumer(self):
        return confluent_kafka.Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "unused-assign-only",
             "enable.auto.commit": False, "enable.partition.eof": True}
        )

    def drain_confluent(self, topic, partitions, expect):
        """Read `expect` messages from the beginning of the given partitions."""
        c = self.confluent_consumer()
        c.assign([TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions])
        out = []
        deadline = time.time() + 30
        while len(out) < expect and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                continue
            self.assertIsNone(m.error(), m.error())
            out.append(m)
        c.close()
        self.assertEqual(len(out), expect, "timed out before reading every record")
        return out

    def produce_confluent(self, producer, topic, records):
        """records: (key, value, headers); returns delivery reports in send order."""
        reports = []

        def cb(err, msg):
            reports.append((err, msg))

        for key, value, headers in records:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=cb)
            producer.poll(0)
        self.assertEqual(producer.flush(30), 0, "records still in flight after 30 s")
        return reports

    # --- topics -----------------------------------------------------------------

    def test_admin_create_describe_delete_topic(self):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        t = topic_name("admin")
        admin.create_topics([NewTopic(t, num_partitions=4, replication_factor=1,
                                      config={"retention.ms": "3600000"})])[t].result(15)
        md = admin.list_topics(timeout=10)
        self.assertIn(t, md.topics)
        self.assertEqual(sorted(md.topics[t].partitions), [0, 1, 2, 3])
        for p in md.topics[t].partitions.values():
            self.assertEqual(p.leader, md.topics[t].partitions[0].leader)
            self.assertEqual(p.isrs, p.replicas)
        res = ConfigResource(ConfigResource.Type.TOPIC, t)
        cfg = admin.describe_configs([res])[res].result(15)
        self.assertEqual(cfg["retention.ms"].value, "3600000")
        # an existing name is refused with TOPIC_ALREADY_EXISTS
        with self.assertRaises(confluent_kafka.KafkaException) as e:
            admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])[t].result(15)
        self.assertEqual(e.exception.args[0].code(), KafkaError.TOPIC_ALREADY_EXISTS)
        # kcat sees it too
        self.assertIn(f'topic "{t}" with 4 partitions'.encode(), self.kcat("-L", "-t", t))
        admin.delete_topics([t])[t].result(15)
        deadline = time.time() + 10
        while t in admin.list_topics(timeout=10).topics and time.time() < deadline:
            time.sleep(0.1)
        self.assertNotIn(t, admin.list_topics(timeout=10).topics)

    def test_kafka_python_admin(self):
        admin = kafka.KafkaAdminClient(bootstrap_servers=self.bootstrap)
        t = topic_name("kpadmin")
        admin.create_topics([kafka.admin.NewTopic(t, 2, 1)])
        self.assertIn(t, admin.list_topics())
        admin.delete_topics([t])
        self.assertNotIn(t, admin.list_topics())
        admin.close()

    # --- produce and consume ------------------------------------------------------

    def test_keyed_records_land_on_murmur2_partitions(self):
        parts = 6
        t = topic_name("keyed")
        self.create_topic(t, parts)
        keys = [f"user-{i}".encode() for i in range(60)]
        # weir's own producer (CLI), kafka-python (murmur2 default) and librdkafka
        # with murmur2_random all place a key where Java would.
        self.weir("produce", "--bootstrap-server", self.bootstrap, "--topic", t,
                  "--property", "parse.key=true", "--property", "key.separator=:",
                  stdin=b"".join(k + b":weir\n" for k in keys))
        kp = kafka.KafkaProducer(bootstrap_servers=self.bootstrap)
        futs = [kp.send(t, key=k, value=b"kafka-python") for k in keys]
        kp.flush()
        for k, f in zip(keys, futs):
            self.assertEqual(f.get(10).partition, kafka_partition(k, parts), k)
        kp.close()
        reports = self.produce_confluent(self.confluent_producer(partitioner="murmur2_random"),
                                         t, [(k, b"librdkafka", None) for k in keys])
        for err, msg in reports:
            self.assertIsNone(err)
            self.assertEqual(msg.partition(), kafka_partition(msg.key(), parts))
        # read every partition back with kcat and check where each key is stored
        seen = 0
        for p in range(parts):
            out = self.kcat("-C", "-t", t, "-p", str(p), "-o", "beginning", "-e", "-q",
                            "-f", "%k|%s\n")
            for line in out.splitlines():
                key, _, _ = line.partition(b"|")
                self.assertEqual(kafka_partition(key, parts), p, key)
                seen += 1
        self.assertEqual(seen, 3 * len(keys))

    def test_in_order_consume_across_clients(self):
        t = topic_name("order")
        self.create_topic(t, 1)
        n = 5000
        values = [f"v{i:06d}".encode() for i in range(n)]
        reports = self.produce_confluent(self.confluent_producer(acks="all"), t,
                                         [(None, v, None) for v in values])
        offsets = [m.offset() for e, m in reports if e is None]
        self.assertEqual(offsets, list(range(n)), "offsets must be dense and in send order")
        # kcat
        out = self.kcat("-C", "-t", t, "-o", "beginning", "-e", "-q", "-f", "%o %s\n")
        self.assertEqual([l.split()[1] for l in out.splitlines()], values)
        self.assertEqual([int(l.split()[0]) for l in out.splitlines()], list(range(n)))
        # kafka-python
        kc = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=5000, enable_auto_commit=False)
        kc.assign([kafka.TopicPartition(t, 0)])
        got = [(m.offset, m.value) for m in kc]
        kc.close()
        self.assertEqual(got, list(enumerate(values)))
        # weir's own consumer
        r = self.weir("consume", "--bootstrap-server", self.bootstrap, "--topic", t,
                      "--from-beginning", "--max-messages", str(n))
        self.assertEqual(r.stdout.splitlines(), values)

    def test_headers_roundtrip(self):
        t = topic_name("headers")
        self.create_topic(t, 1)
        headers = [("trace-id", b"abc123"), ("empty", b""), ("dup", b"1"), ("dup", b"2")]
        reports = self.produce_confluent(self.confluent_producer(), t,
                                         [(b"k", b"with-headers", headers)])
        self.assertIsNone(reports[0][0])
        kc = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, consumer_timeout_ms=5000,
                                 enable_auto_commit=False)
        kc.assign([kafka.TopicPartition(t, 0)])
        kc.seek_to_beginning()
        msgs = list(kc)
        kc.close()
        self.assertEqual(len(msgs), 1)
        self.assertEqual([(k, bytes(v)) for k, v in msgs[0].headers], headers)
        out = self.kcat("-C", "-t", t, "-o", "beginning", "-e", "-q", "-f", "%h\n")
        self.assertIn(b"trace-id=abc123", out)

    def test_all_five_compression_codecs(self):
        for codec in CODECS:
            with self.subTest(codec=codec):
                t = topic_name(f"codec-{codec}")
                self.create_topic(t, 1)
                values = [f"{codec}-{i}-".encode() * 20 for i in range(500)]
                reports = self.produce_confluent(
                    self.confluent_producer(compression_type=codec, linger_ms=20), t,
                    [(None, v, None) for v in values])
                self.assertTrue(all(e is None for e, _ in reports))
                got = [m.value() for m in self.drain_confluent(t, [0], len(values))]
                self.assertEqual(got, values)
                out = self.kcat("-C", "-t", t, "-o", "beginning", "-e", "-q", "-f", "%s\n")
                self.assertEqual(out.splitlines(), values)
                r = self.weir("consume", "--bootstrap-server", self.bootstrap, "--topic", t,
                              "--from-beginning", "--max-messages", str(len(values)))
                self.assertEqual(r.stdout.splitlines(), values)

    def test_list_offsets_and_offsets_for_times(self):
        t = topic_name("times")
        self.create_topic(t, 1)
        base = int(time.time() * 1000) - 100_000
        p = self.confluent_producer()
        for i in range(100):
            p.produce(t, value=f"r{i}".encode(), timestamp=base + i * 1000)
        self.assertEqual(p.flush(30), 0)
        c = self.confluent_consumer()
        self.assertEqual(c.get_watermark_offsets(TopicPartition(t, 0), timeout=10), (0, 100))
        found = c.offsets_for_times([TopicPartition(t, 0, base + 41_500)], timeout=10)
        self.assertEqual(found[0].offset, 42)  # first record with ts >= the query
        found = c.offsets_for_times([TopicPartition(t, 0, base + 10_000_000)], timeout=10)
        self.assertEqual(found[0].offset, -1)  # none that late: end (-1)
        c.close()
        kc = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        tp = kafka.TopicPartition(t, 0)
        self.assertEqual(kc.beginning_offsets([tp])[tp], 0)
        self.assertEqual(kc.end_offsets([tp])[tp], 100)
        hit = kc.offsets_for_times({tp: base + 7_000})[tp]
        self.assertEqual((hit.offset, hit.timestamp), (7, base + 7_000))
        kc.close()
        out = self.kcat("-C", "-t", t, "-o", f"s@{base + 95_000}", "-e", "-q", "-f", "%o\n")
        self.assertEqual(out.split(), [b"95", b"96", b"97", b"98", b"99"])

    def test_record_over_message_max_bytes_is_rejected(self):
        t = topic_name("big")
        self.create_topic(t, 1)
        p = self.confluent_producer(message_max_bytes=4_000_000, compression_type="none")
        big = os.urandom(1_500_000)  # over the broker's 1 MiB default, incompressible
        reports = self.produce_confluent(p, t, [(None, big, None), ])
        err = reports[0][0]
        self.assertIsNotNone(err, "a 1.5 MB record must not be accepted")
        self.assertEqual(err.code(), KafkaError.MSG_SIZE_TOO_LARGE)
        kp = kafka.KafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=4_000_000)
        with self.assertRaises(kafka.errors.MessageSizeTooLargeError):
            kp.send(t, big).get(15)
        kp.close()
        # nothing was stored, and the broker still serves a normal record
        reports = self.produce_confluent(self.confluent_producer(), t, [(None, b"small", None)])
        self.assertIsNone(reports[0][0])
        self.assertEqual(reports[0][1].offset(), 0)

    def test_metadata_auto_creates_a_topic(self):
        # auto.create.topics.enable defaults to true, with num.partitions = 1
        t = topic_name("auto")
        kp = kafka.KafkaProducer(bootstrap_servers=self.bootstrap)
        meta = kp.send(t, b"first").get(15)
        kp.close()
        self.assertEqual((meta.partition, meta.offset), (0, 0))
        md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=10)
        self.assertEqual(list(md.topics[t].partitions), [0])

    def test_idempotent_kafka_python_producer(self):
        t = topic_name("idem")
        self.create_topic(t, 2)
        kp = kafka.KafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True,
                                 acks="all")
        futs = [kp.send(t, key=str(i % 7).encode(), value=str(i).encode()) for i in range(2000)]
        kp.flush()
        self.assertTrue(all(f.get(10).offset >= 0 for f in futs))
        kp.close()
        got = self.drain_confluent(t, [0, 1], 2000)
        self.assertEqual(sorted(int(m.value()) for m in got), list(range(2000)))


if __name__ == "__main__":
    unittest.main()
