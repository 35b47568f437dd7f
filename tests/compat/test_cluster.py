"""Three real `weir server` processes on loopback (broker + controller each):
replication, acks=all, leader failover after kill -9, min.insync.replicas,
and the usual clients (kcat, kafka-python, confluent-kafka) on a cluster."""

import subprocess
import threading
import time
import unittest
import uuid

import confluent_kafka
import confluent_kafka.admin
import kafka
from confluent_kafka import KafkaError, TopicPartition

from cluster import Cluster
from harness import WEIR


def create_topic(bootstrap, name, partitions=1, rf=3, configs=None):
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([confluent_kafka.admin.NewTopic(
        name, num_partitions=partitions, replication_factor=rf, config=configs or {})])
    fs[name].result(30)


def read_all(bootstrap, topic, partition=0, expect=None, timeout=60):
    """Every record of the partition, from the start, via confluent-kafka."""
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, partition, confluent_kafka.OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                if expect is None or len(got) >= expect:
                    break
                continue
            raise AssertionError(f"consume error {m.error()}")
        got.append((m.offset(), m.value()))
    consumer.close()
    return got


class ClusterTestCase(unittest.TestCase):
    cluster = None
    overrides = None

    def setUp(self):
        self.cluster = Cluster(3, overrides=self.overrides).start()
        self.bootstrap = self.cluster.bootstrap

    def tearDown(self):
        logs = self.cluster.log_tails(60)
        self.cluster.cleanup()
        self.assertNotIn("panicked", logs)


class KillLeaderUnderAcksAll(ClusterTestCase):
    def test_every_acknowledged_record_survives_the_leaders_kill9(self):
        topic = f"repl-{uuid.uuid4().hex[:8]}"
        create_topic(self.bootstrap, topic, rf=3, configs={"min.insync.replicas": "2"})
        leader, replicas, isr = self.cluster.partition_leader(topic)
        self.assertEqual(sorted(replicas), [1, 2, 3])
        acked, failed = [], []
        lock = threading.Lock()

        def on_delivery(err, msg):
            with lock:
                (failed if err else acked).append((msg.value(), msg.offset()))

        producer = confluent_kafka.Producer({
            "bootstrap.servers": self.bootstrap, "acks": "all",
            "enable.idempotence": True, "linger.ms": 2,
            "message.timeout.ms": 60000, "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
            "topic.metadata.refresh.interval.ms": 500})
        sent, killed = 0, False
        deadline = time.time() + 90
        while time.time() < deadline:
            producer.produce(topic, value=f"{sent:08d}".encode(), partition=0,
                             on_delivery=on_delivery)
            sent += 1
            producer.poll(0)
            if sent % 200 == 0:
                producer.poll(0.01)
            with lock:
                n = len(acked)
            if not killed and n >= 5000:
                self.cluster.nodes[leader].kill9()
                killed = True
                killed_at = sent
            if killed and sent >= killed_at + 5000:
                break
        self.assertEqual(producer.flush(60), 0, "records unresolved 60 s after the kill")
        self.assertTrue(killed, "too few acknowledgements before the deadline")
        self.assertEqual(failed, [], "an idempotent acks=all producer must not fail")
        new_leader, _, _ = self.cluster.partition_leader(topic)
        self.assertNotEqual(new_leader, leader)
        live = ",".join(n.bootstrap for i, n in self.cluster.nodes.items() if i != leader)
        stored = read_all(live, topic, expect=len(acked))
        values = [v for _, v in stored]
        self.assertEqual(len(values), len(set(values)), "a record is stored twice")
        stored_set = set(values)
        lost = [v for v, _ in acked if v not in stored_set]
        self.assertEqual(lost, [], f"{len(lost)} acknowledged records lost, e.g. {lost[:3]}")
        # Per-partition order: the values were sent in increasing order.
        self.assertEqual(values, sorted(values))
        offsets = {v: o for v, o in acked}
        for o, v in stored:
            if v in offsets:
                self.assertEqual(o, offsets[v], "an acknowledged offset changed")


class MinInsyncReplicas(ClusterTestCase):
    def test_acks_all_is_refused_below_min_insync_and_nothing_acknowledged_is_lost(self):
        topic = f"mis-{uuid.uuid4().hex[:8]}"
        create_topic(self.bootstrap, topic, rf=3, configs={"min.insync.replicas": "2"})
        leader, replicas, _ = self.cluster.partition_leader(topic)
        p = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                                      "message.timeout.ms": 20000})
        for i in range(100):
            p.produce(topic, value=f"before-{i}".encode(), partition=0)
        self.assertEqual(p.flush(30), 0)
        followers = [r for r in replicas if r != leader]
        for f in followers:
            self.cluster.nodes[f].kill9()
        # Once the leader drops both followers from the ISR, acks=all fails
        # with NOT_ENOUGH_REPLICAS(_AFTER_APPEND); acks=1 still works.
        errors = []
        p2 = confluent_kafka.Producer({"bootstrap.servers": self.cluster.nodes[leader].bootstrap,
                                       "acks": "all", "message.timeout.ms": 15000,
                                       "retries": 0})
        deadline = time.time() + 40
        while time.time() < deadline and not errors:
            p2.produce(topic, value=b"below-min", partition=0,
                       on_delivery=lambda err, msg: err and errors.append(err))
            p2.flush(20)
        self.assertTrue(errors, "acks=all kept succeeding with one replica in sync")
        codes = {e.code() for e in errors}
        self.assertTrue(codes & {KafkaError.NOT_ENOUGH_REPLICAS,
                                 KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                                 KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT},
                        f"unexpected errors {errors}")
        stored = [v for _, v in read_all(self.cluster.nodes[leader].bootstrap, topic, expect=100)]
        for i in range(100):
            self.assertIn(f"before-{i}".encode(), stored)


class ClientsOnACluster(ClusterTestCase):
    def test_kcat_kafka_python_and_confluent_share_a_replicated_topic(self):
        topic = f"cl-{uuid.uuid4().hex[:8]}"
        r = subprocess.run([WEIR, "topics", "--bootstrap-server", self.bootstrap, "--create",
                            "--topic", topic, "--partitions", "3", "--replication-factor", "3"],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        # Brokers learn of the topic from the controller within moments; the
        # CLI may ask one that has not yet (as with Kafka's metadata).
        deadline = time.time() + 15
        while True:
            r = subprocess.run([WEIR, "topics", "--bootstrap-server", self.bootstrap,
                                "--describe", "--topic", topic], capture_output=True, timeout=60)
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        lines = [l for l in r.stdout.decode().splitlines() if "Partition:" in l]
        self.assertEqual(len(lines), 3, r.stdout.decode())
        for l in lines:
            self.assertIn("Replicas: ", l)
            replicas = l.split("Replicas: ")[1].split()[0].split(",")
            isr = l.split("Isr: ")[1].split()[0].split(",")
            self.assertEqual(sorted(replicas), ["1", "2", "3"])
            self.assertEqual(sorted(isr), ["1", "2", "3"])
        leaders = {l.split("Leader: ")[1].split()[0] for l in lines}
        self.assertEqual(len(leaders), 3, f"leaders not spread: {lines}")

        kcat_in = "\n".join(f"kcat-{i}" for i in range(50)).encode()
        r = subprocess.run(["kcat", "-b", self.bootstrap, "-P", "-t", topic, "-p", "0",
                            "-X", "acks=all"], input=kcat_in, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        kp = kafka.KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all")
        for i in range(50):
            kp.send(topic, value=f"kp-{i}".encode(), partition=1)
        kp.flush(30)
        kp.close()
        cp = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        for i in range(50):
            cp.produce(topic, value=f"ck-{i}".encode(), partition=2)
        self.assertEqual(cp.flush(30), 0)

        r = subprocess.run(["kcat", "-b", self.bootstrap, "-C", "-t", topic, "-p", "1",
                            "-o", "beginning", "-e", "-q"], capture_output=True, timeout=60)
        self.assertEqual(r.stdout.decode().split(), [f"kp-{i}" for i in range(50)])
        kc = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap.split(","),
                                 auto_offset_reset="earliest", consumer_timeout_ms=10000,
                                 group_id=f"g-{uuid.uuid4().hex[:6]}")
        kc.subscribe([topic])
        seen = set()
        deadline = time.time() + 60
        while time.time() < deadline and len(seen) < 150:
            for recs in kc.poll(timeout_ms=1000).values():
                seen.update(r.value for r in recs)
        kc.close()
        want = {f"{p}-{i}".encode() for p in ("kcat", "kp", "ck") for i in range(50)}
        self.assertEqual(seen, want)


class CoordinatorFailover(ClusterTestCase):
    def test_committed_offsets_survive_the_coordinators_kill9(self):
        topic = f"cf-{uuid.uuid4().hex[:8]}"
        group = f"g-{uuid.uuid4().hex[:6]}"
        create_topic(self.bootstrap, topic, partitions=2, rf=3,
                     configs={"min.insync.replicas": "2"})
        p = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        total = 2000
        for i in range(total):
            p.produce(topic, value=f"{i:06d}".encode(), partition=i % 2)
        self.assertEqual(p.flush(30), 0)

        def consumer():
            return confluent_kafka.Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})

        c = consumer()
        c.subscribe([topic])
        seen, committed = set(), {}
        deadline = time.time() + 60
        while time.time() < deadline and len(seen) < total // 2:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen.add(m.value())
            if len(seen) % 100 == 0:
                for tp in c.commit(asynchronous=False):
                    if not tp.error and tp.offset >= 0:
                        committed[tp.partition] = tp.offset
        self.assertTrue(committed, "nothing was committed before the failover")
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": self.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(30)
        coordinator = desc.coordinator.id
        self.cluster.nodes[coordinator].kill9()
        # The member finds the new coordinator; what it commits resumes from
        # where the old one left off: offsets never go back.
        deadline = time.time() + 90
        while time.time() < deadline and len(seen) < total:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen.add(m.value())
            if len(seen) % 100 == 0 or len(seen) == total:
                try:
                    for tp in c.commit(asynchronous=False):
                        if tp.error or tp.offset < 0:
                            continue  # no position for it (yet): nothing committed
                        self.assertGreaterEqual(tp.offset, committed.get(tp.partition, 0),
                                                "a committed offset went back")
                        committed[tp.partition] = tp.offset
                except confluent_kafka.KafkaException:
                    pass  # coordinator moving: the next commit retries
        self.assertEqual(len(seen), total, "records lost across the failover")
        c.close()
        # A new member of the group resumes at the committed offsets.
        c2 = consumer()
        c2.subscribe([topic])
        positions = {}
        deadline = time.time() + 60
        while time.time() < deadline and len(positions) < 2:
            c2.poll(0.5)
            for tp in c2.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)],
                                   timeout=10):
                if tp.offset >= 0:
                    positions[tp.partition] = tp.offset
        c2.close()
        for part, off in committed.items():
            self.assertGreaterEqual(positions.get(part, -1), off,
                                    f"partition {part}: committed {off} was lost")


if __name__ == "__main__":
    unittest.main()
