"""Consumer groups with real clients against a real `weir server`: kafka-python 3
(KafkaConsumer with group_id), confluent-kafka (librdkafka 2.16) and kcat -G
(librdkafka 2.0). Each test asserts what a user of the client would notice:
partitions split between members, handed over when one leaves, committed
offsets resumed exactly, static members kept without a rebalance, and the
cooperative-sticky assignor working."""

import multiprocessing
import os
import queue
import tempfile
import time
import unittest
import uuid

import confluent_kafka
from confluent_kafka import KafkaError, TopicPartition
import kafka

from harness import Broker, BrokerTestCase

# The broker runs with Kafka's test-friendly settings: no initial rebalance
# delay (the default 3 s only slows tests) and a few offsets partitions.
BROKER_CONFIG = """
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=5
"""


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate, timeout=30, step=None, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if step:
            step()
        if predicate():
            return
        if not step:
            time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def kafka_python_member(bootstrap, group, topic, assigned, stop):
    """One kafka-python group member in its own process. (Two KafkaConsumers
    in one process share kafka-python 3.0's IO thread, which sometimes drops
    a leader's SyncGroup completion: a client race, not a broker one.)"""
    c = kafka.KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group,
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=10000, heartbeat_interval_ms=500,
    )
    last = None
    while not stop.is_set():
        c.poll(timeout_ms=100)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            assigned.put(now)
            last = now
    c.close()  # sends LeaveGroup


class PollingMember:
    """A kafka-python member process; the test reads its latest assignment."""

    def __init__(self, bootstrap, group, topic):
        ctx = multiprocessing.get_context("spawn")
        self.assigned_q = ctx.Queue()
        self.stopping = ctx.Event()
        self.latest = set()
        self.proc = ctx.Process(
            target=kafka_python_member,
            args=(bootstrap, group, topic, self.assigned_q, self.stopping),
            daemon=True,
        )
        self.proc.start()

    def partitions(self):
        while True:
            try:
                self.latest = set(self.assigned_q.get_nowait())
            except queue.Empty:
                return set(self.latest)

    def stop(self):
        self.stopping.set()
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()


class Groups(BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        fd, cls.config_path = tempfile.mkstemp(prefix="weir-groups-", suffix=".properties")
        with os.fdopen(fd, "w") as f:
            f.write(BROKER_CONFIG)
        cls.broker = Broker(extra_args=["--config", cls.config_path]).start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        os.remove(cls.config_path)

    # ---- helpers -----------------------------------------------------------

    def produce(self, topic, n, partitions):
        p = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for i in range(n):
            p.produce(topic, value=f"v{i}".encode(), key=f"k{i}".encode(), partition=i % partitions)
        self.assertEqual(p.flush(30), 0)

    def confluent(self, group, **extra):
        conf = {
            "bootstrap.servers": self.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
        }
        conf.update({k.replace("_", "."): v for k, v in extra.items()})
        return confluent_kafka.Consumer(conf)

    def kafka_python(self, group, topic, **extra):
        return kafka.KafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
            **extra,
        )

    def drain_confluent(self, c, expect, timeout=30):
        out = []
        deadline = time.time() + timeout
        while len(out) < expect and time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                self.fail(m.error())
            out.append(m)
        return out

    # ---- tests ---------------------------------------------------------------

    def test_kafka_python_two_members_split_then_hand_over(self):
        # Each member is its own process, as in any real deployment.
        topic, group = name("kp-split"), name("g")
        self.create_topic(topic, partitions=4)
        members = [PollingMember(self.bootstrap, group, topic) for _ in range(2)]
        a, b = members

        def both_assigned():
            pa, pb = a.partitions(), b.partitions()
            return len(pa) == 2 and len(pb) == 2 and pa | pb == {0, 1, 2, 3}

        try:
            wait_until(both_assigned, timeout=60, what="a 2+2 split")
            b.stop()  # close() sends LeaveGroup: a takes everything over
            wait_until(lambda: a.partitions() == {0, 1, 2, 3}, timeout=60,
                       what="a owning all 4 partitions")
        finally:
            for m in members:
                m.stop()

    def test_confluent_two_members_split_then_hand_over(self):
        topic, group = name("ck-split"), name("g")
        self.create_topic(topic, partitions=4)
        a, b = self.confluent(group), self.confluent(group)
        a.subscribe([topic])
        b.subscribe([topic])

        def both_assigned():
            a.poll(0.1)
            b.poll(0.1)
            pa = {tp.partition for tp in a.assignment()}
            pb = {tp.partition for tp in b.assignment()}
            return len(pa) == 2 and len(pb) == 2 and pa | pb == {0, 1, 2, 3}

        wait_until(both_assigned, timeout=60, what="a 2+2 split")
        b.close()
        wait_until(lambda: a.poll(0.1) is None and len(a.assignment()) == 4,
                   timeout=60, what="a owning all 4 partitions")
        a.close()

    def test_confluent_committed_offsets_resume_exactly(self):
        topic, group = name("ck-resume"), name("g")
        self.create_topic(topic, partitions=4)
        self.produce(topic, 40, 4)
        c = self.confluent(group, max_poll_interval_ms=60000)
        c.subscribe([topic])
        first = self.drain_confluent(c, 15)
        self.assertEqual(len(first), 15)
        c.commit(asynchronous=False)
        c.close()
        c = self.confluent(group)
        c.subscribe([topic])
        rest = self.drain_confluent(c, 25)
        # Nothing more arrives: nothing was re-read.
        extra = self.drain_confluent(c, 1, timeout=3)
        c.close()
        seen = [m.value() for m in first + rest + extra]
        self.assertEqual(len(seen), 40, "nothing skipped, nothing re-read")
        self.assertEqual(sorted(seen), sorted(f"v{i}".encode() for i in range(40)))

    def test_kafka_python_committed_offsets_resume_exactly(self):
        topic, group = name("kp-resume"), name("g")
        self.create_topic(topic, partitions=1)
        self.produce(topic, 20, 1)
        c = self.kafka_python(group, topic, max_poll_records=5)
        got = []
        deadline = time.time() + 60
        while len(got) < 10 and time.time() < deadline:
            for recs in c.poll(timeout_ms=200, max_records=10 - len(got)).values():
                got.extend(recs)
        self.assertEqual([r.offset for r in got], list(range(10)))
        c.commit()
        c.close()
        c = self.kafka_python(group, topic)
        tp = kafka.TopicPartition(topic, 0)
        rest = []
        deadline = time.time() + 60
        while len(rest) < 10 and time.time() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                rest.extend(recs)
        self.assertEqual(c.committed(tp), 10)
        c.close()
        self.assertEqual([r.offset for r in rest], list(range(10, 20)))

    def test_two_groups_each_see_everything(self):
        topic = name("two-groups")
        self.create_topic(topic, partitions=2)
        self.produce(topic, 10, 2)
        for group in (name("g1"), name("g2")):
            c = self.confluent(group)
            c.subscribe([topic])
            msgs = self.drain_confluent(c, 10)
            c.close()
            self.assertEqual(len(msgs), 10, group)

    def test_kcat_balanced_consumer(self):
        topic, group = name("kcat-g"), name("g")
        self.create_topic(topic, partitions=2)
        self.produce(topic, 6, 2)
        out = self.kcat("-G", group, "-X", "auto.offset.reset=earliest", "-c", "6",
                        "-f", "%s\\n", topic, timeout=60)
        self.assertEqual(sorted(out.split()), sorted(f"v{i}".encode() for i in range(6)))
        # kcat committed (auto-commit): the group resumes past what it read.
        c = self.confluent(group)
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        c.close()
        self.assertEqual(sum(tp.offset for tp in committed), 6)

    def test_static_membership_restart_keeps_partitions(self):
        topic, group = name("static"), name("g")
        self.create_topic(topic, partitions=4)
        assigns = {"a": 0}

        def on_assign_a(consumer, partitions):
            assigns["a"] += 1

        a = self.confluent(group, group_instance_id="inst-a")
        b = self.confluent(group, group_instance_id="inst-b")
        a.subscribe([topic], on_assign=on_assign_a)
        b.subscribe([topic])

        def split():
            a.poll(0.1)
            b.poll(0.1)
            return len(a.assignment()) == 2 and len(b.assignment()) == 2

        wait_until(split, timeout=60, what="a 2+2 split")
        before_b = sorted(tp.partition for tp in b.assignment())
        before_a_assigns = assigns["a"]
        # A static member's close sends no LeaveGroup: the group waits for it.
        b.close()
        b = self.confluent(group, group_instance_id="inst-b")
        b.subscribe([topic])
        wait_until(lambda: b.poll(0.1) is None and len(b.assignment()) == 2,
                   timeout=30, step=lambda: a.poll(0.1), what="b back with its partitions")
        self.assertEqual(sorted(tp.partition for tp in b.assignment()), before_b)
        for _ in range(10):
            a.poll(0.1)
        self.assertEqual(assigns["a"], before_a_assigns, "a saw no rebalance")
        a.close()
        b.close()

    def test_cooperative_sticky(self):
        topic, group = name("coop"), name("g")
        self.create_topic(topic, partitions=4)
        self.produce(topic, 20, 4)
        conf = {"partition_assignment_strategy": "cooperative-sticky"}
        a, b = self.confluent(group, **conf), self.confluent(group, **conf)
        a.subscribe([topic])
        seen = self.drain_confluent(a, 20)
        self.assertEqual(len(seen), 20)
        self.assertEqual(len(a.assignment()), 4)
        b.subscribe([topic])

        def split():
            a.poll(0.1)
            b.poll(0.1)
            pa = {tp.partition for tp in a.assignment()}
            pb = {tp.partition for tp in b.assignment()}
            return len(pa) == 2 and len(pb) == 2 and pa | pb == {0, 1, 2, 3}

        wait_until(split, timeout=60, what="an incremental 2+2 split")
        a.close()
        b.close()

    def test_weir_groups_cli(self):
        topic, group = name("cli"), name("g")
        self.create_topic(topic, partitions=2)
        self.produce(topic, 10, 2)
        c = self.confluent(group, client_id="cli-member")
        c.subscribe([topic])
        got = self.drain_confluent(c, 10)
        self.assertEqual(len(got), 10)
        c.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)],
                 asynchronous=False)
        b = self.bootstrap
        listed = self.weir("groups", "--bootstrap-server", b, "--list", "--state").stdout.decode()
        self.assertIn(f"{group} Stable", listed)
        out = self.weir("groups", "--bootstrap-server", b, "--describe", "--group", group)
        rows = [l.split() for l in out.stdout.decode().splitlines() if l.startswith(group)]
        # GROUP TOPIC PARTITION CURRENT LOG-END LAG CONSUMER-ID HOST CLIENT-ID
        self.assertEqual([r[2:6] for r in rows], [["0", "3", "5", "2"], ["1", "5", "5", "0"]])
        self.assertTrue(all(r[7] == "/127.0.0.1" and r[8] == "cli-member" for r in rows), rows)
        # Resetting is refused while the group has members.
        r = self.weir("groups", "--bootstrap-server", b, "--reset-offsets", "--group", group,
                      "--topic", topic, "--to-earliest", "--execute", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"active member", r.stderr)
        r = self.weir("groups", "--bootstrap-server", b, "--delete", "--group", group, check=False)
        self.assertIn(b"NON_EMPTY_GROUP", r.stderr)
        c.close()
        wait_until(lambda: f"{group} Empty" in self.weir(
            "groups", "--bootstrap-server", b, "--list", "--state").stdout.decode(),
            timeout=30, what="the group to empty")
        self.weir("groups", "--bootstrap-server", b, "--reset-offsets", "--group", group,
                  "--topic", topic, "--to-earliest", "--execute")
        c = self.confluent(group)
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        self.assertEqual([tp.offset for tp in committed], [0, 0])
        c.close()
        self.weir("groups", "--bootstrap-server", b, "--delete", "--group", group)
        listed = self.weir("groups", "--bootstrap-server", b, "--list").stdout.decode()
        self.assertNotIn(group, listed)

    def test_weir_consume_group(self):
        import subprocess
        from harness import WEIR
        topic, group = name("wc"), name("g")
        self.create_topic(topic, partitions=3)
        self.produce(topic, 30, 3)
        args = [WEIR, "consume", "--bootstrap-server", self.bootstrap, "--topic", topic,
                "--group", group, "--from-beginning"]
        # Part of the topic, then the rest: nothing re-read, nothing skipped.
        first = subprocess.run(args + ["--max-messages", "7"], capture_output=True, timeout=60)
        self.assertEqual(first.returncode, 0, first.stderr)
        # Two members at once share the rest.
        procs = [subprocess.Popen(args + ["--timeout-ms", "4000"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(2)]
        outs = [p.communicate(timeout=90)[0] for p in procs]
        seen = first.stdout.split() + outs[0].split() + outs[1].split()
        self.assertEqual(len(first.stdout.split()), 7)
        self.assertEqual(sorted(seen), sorted(f"v{i}".encode() for i in range(30)))
        c = self.confluent(group)
        committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        c.close()
        self.assertEqual(sum(tp.offset for tp in committed), 30)

    def test_aiokafka_group_resumes_from_commit(self):
        import asyncio
        from aiokafka import AIOKafkaConsumer
        topic, group = name("aio"), name("g")
        self.create_topic(topic, partitions=2)
        self.produce(topic, 10, 2)

        async def consume(n):
            c = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
            await c.start()
            got = []
            try:
                while len(got) < n:
                    batch = await asyncio.wait_for(c.getmany(timeout_ms=500), 30)
                    for recs in batch.values():
                        got.extend(recs)
                offsets = {}
                for r in got[:n]:
                    from aiokafka.structs import TopicPartition as Tp, OffsetAndMetadata
                    offsets[Tp(r.topic, r.partition)] = OffsetAndMetadata(r.offset + 1, "")
                await c.commit(offsets)
            finally:
                await c.stop()
            return [r.value for r in got[:n]]

        first = asyncio.run(consume(4))
        rest = asyncio.run(consume(6))
        self.assertEqual(sorted(first + rest), sorted(f"v{i}".encode() for i in range(10)))


if __name__ == "__main__":
    unittest.main()
